"""The access review (seed 000: "review regularly"): every principal by every permission.

Pure: builds rows from a :class:`Policy`; rendering to table, CSV or JSON is
text work with no I/O.
"""

from __future__ import annotations

import csv
import io
import json

from meterd.policy.grants import Grant, PrincipalKind, grants_of, principals
from meterd.policy.model import Policy
from meterd.policy.permissions import BY_BIT, Permission
from meterd.policy.request import Channel
from meterd.record import record


@record
class ReviewRow:
    """Whether one principal holds one permission, and why.

    Attributes:
        principal: Name.
        kind: User, application or anonymous.
        enabled: False for disabled principals (they are denied everything).
        permission: The permission.
        sources: Each grant giving it, as ``role`` / ``role via group``, with its scopes.
        capped_on: Channels whose cap withholds it.

    """

    principal: str
    kind: PrincipalKind
    enabled: bool
    permission: Permission
    sources: tuple[str, ...]
    capped_on: tuple[Channel, ...]

    @property
    def held(self) -> bool:
        """True when at least one grant gives the permission somewhere."""
        return bool(self.sources)


def describe_grant(grant: Grant) -> str:
    """Return ``role[ via group] @ scope,scope`` for a grant."""
    via = f" via {grant.via}" if grant.via else ""
    where = ",".join(grant.scopes) if grant.scopes else "(no overlap of scopes)"
    return f"{grant.role}{via} @ {where}"


def review_rows(policy: Policy) -> list[ReviewRow]:
    """Return one row per principal and permission, in principal then bit order."""
    caps = policy.constraints.channel_caps
    rows = []
    ordered = sorted(Permission, key=lambda p: p.bit)
    for principal in principals(policy):
        grants = grants_of(policy, principal.name)
        for permission in ordered:
            sources = tuple(describe_grant(g) for g in grants if permission in g.permissions and g.scopes)
            capped = tuple(c for c in Channel if c in caps and permission not in caps[c])
            rows.append(
                ReviewRow(principal.name, principal.kind, principal.enabled, permission, sources, capped)
            )
    return rows


def render_json(rows: list[ReviewRow]) -> str:
    """Render rows as a JSON array of objects."""
    return json.dumps(
        [
            {
                "principal": r.principal,
                "kind": r.kind.value,
                "enabled": r.enabled,
                "permission": r.permission.value,
                "held": r.held,
                "sources": list(r.sources),
                "capped_on": [c.value for c in r.capped_on],
            }
            for r in rows
        ],
        indent=2,
    )


def render_csv(rows: list[ReviewRow]) -> str:
    """Render rows as CSV with a header line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["principal", "kind", "enabled", "permission", "held", "sources", "capped_on"])
    for r in rows:
        writer.writerow(
            [
                r.principal,
                r.kind.value,
                str(r.enabled).lower(),
                r.permission.value,
                "yes" if r.held else "no",
                "; ".join(r.sources),
                " ".join(c.value for c in r.capped_on),
            ]
        )
    return out.getvalue()


def render_table(rows: list[ReviewRow]) -> str:
    """Render a principal by permission matrix with a legend.

    Cells: ``D`` direct role, ``G`` through a group, ``B`` both, ``.`` not held;
    a disabled principal's row is marked in its name.
    """
    bits = sorted(BY_BIT)
    by_principal: dict[str, list[ReviewRow]] = {}
    for r in rows:
        by_principal.setdefault(r.principal, []).append(r)
    width = max([len(n) + 11 for n in by_principal] + [9])
    header = "principal".ljust(width) + " ".join(f"{b:>2}" for b in bits)
    lines = [header, "-" * len(header)]
    for name, prow in by_principal.items():
        label = name + ("" if prow[0].enabled else " (disabled)")
        cells = []
        for r in sorted(prow, key=lambda x: x.permission.bit):
            direct = any(" via " not in s for s in r.sources)
            group = any(" via " in s for s in r.sources)
            cells.append(" B" if direct and group else " D" if direct else " G" if group else " .")
        lines.append(label.ljust(width) + " ".join(c for c in cells))
    lines.append("")
    lines.append("D = direct role, G = through a group, B = both, . = not held")
    lines += [f"{b:>2} = {BY_BIT[b].value}" for b in bits]
    return "\n".join(lines) + "\n"
