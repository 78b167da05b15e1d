"""The access review with usage: who holds what, who used it, and what an auditor should look at.

Pure: combines the policy's holdings (:func:`meterd.policy.review.review_rows`)
with a :class:`~meterd.review.usage.LogUsage`.  Every finding carries the
sequence numbers an auditor can look up with ``meterctl log show``.

Findings (their ``kind`` is a stable identifier):
    * ``unused-grant``: an enabled principal holds a permission it never used
      in the window.
    * ``unused-role``: a role assigned to someone that none of its holders used
      (no holder used any permission the role grants).
    * ``never-logged-in``: an enabled user or application with no successful
      login and no allowed request in the window.
    * ``repeated-refusal``: a principal refused the same permission at least
      ``refusal_threshold`` times (a missing grant, or someone trying).
    * ``dual-control-rejected`` / ``dual-control-timed-out`` /
      ``dual-control-abandoned``: a dual-control request that did not go through.
    * ``policy-change``: a policy change (or a refused attempt) in the window, with who made it.
"""

from __future__ import annotations

from collections import Counter

from meterd.policy.grants import PrincipalKind, grants_of, principals
from meterd.policy.model import Policy
from meterd.policy.review import ReviewRow, review_rows
from meterd.record import record
from meterd.review.usage import LogUsage

DEFAULT_REFUSAL_THRESHOLD = 3


@record
class UsageRow:
    """One principal and permission: the grant and its use.

    Attributes:
        grant: Whether and why the policy gives it.
        uses: Allowed requests in the window (aggregated counts included).
        last_use: Time of the newest allow, or empty.
        last_seq: Seq of the newest allow, or 0.
        channels: Channels the allows came through, sorted.
        refusals: Refused requests in the window.
    """

    grant: ReviewRow
    uses: int
    last_use: str
    last_seq: int
    channels: tuple[str, ...]
    refusals: int

    @property
    def state(self) -> str:
        """``used``, ``unused`` (held, never used), ``refused`` (not held, refused) or ``none``."""
        if self.grant.held and self.grant.enabled:
            return "used" if self.uses else "unused"
        if self.uses:
            return "used"
        return "refused" if self.refusals else "none"


@record
class Finding:
    """Something an auditor should look at, with the evidence.

    Attributes:
        kind: Stable identifier (see the module docstring).
        principal: Who it is about, or empty.
        subject: The permission or role concerned, or empty.
        count: How many records stand behind it (0 for an absence).
        seqs: Seqs to look up in the log (first and last, or the one record).
        message: One line for a human.
    """

    kind: str
    principal: str
    subject: str
    count: int
    seqs: tuple[int, ...]
    message: str


@record
class Review:
    """The whole review: usage rows and findings over one log window."""

    rows: tuple[UsageRow, ...]
    findings: tuple[Finding, ...]
    usage: LogUsage


def usage_rows(policy: Policy, usage: LogUsage) -> list[UsageRow]:
    """Return one row per principal and permission, with its use in the window."""
    out = []
    for row in review_rows(policy):
        pair = (row.principal, row.permission)
        use = usage.uses.get(pair)
        refused = usage.refusals.get(pair)
        channels = tuple(sorted(c.value for c in usage.channels.get(pair, ())))
        out.append(
            UsageRow(
                row,
                use.count if use else 0,
                use.last_time if use else "",
                use.last_seq if use else 0,
                channels,
                refused.count if refused else 0,
            )
        )
    return out


def _unused_roles(policy: Policy, usage: LogUsage) -> list[Finding]:
    holders: dict[str, list[str]] = {}
    for principal in principals(policy):
        for grant in grants_of(policy, principal.name):
            if grant.scopes and principal.enabled:
                holders.setdefault(grant.role, []).append(principal.name)
    found = []
    for role, names in sorted(holders.items()):
        granted = policy.roles[role].permissions
        used = any((n, p) in usage.uses for n in names for p in granted)
        if not used:
            who = ", ".join(sorted(set(names)))
            found.append(
                Finding(
                    "unused-role", "", role, 0, (), f"role {role} (held by {who}) was not used in the window"
                )
            )
    return found


def _never_logged_in(policy: Policy, usage: LogUsage) -> list[Finding]:
    active = set(usage.logins) | {name for name, _ in usage.uses}
    return [
        Finding(
            "never-logged-in",
            p.name,
            "",
            0,
            (),
            f"{p.kind.value} {p.name} never logged in and made no allowed request in the window",
        )
        for p in principals(policy)
        if p.kind is not PrincipalKind.ANONYMOUS and p.enabled and p.name not in active
    ]


def _refusals(usage: LogUsage, threshold: int) -> list[Finding]:
    found = []
    for (name, permission), tally in sorted(usage.refusals.items(), key=lambda kv: (kv[0][0], kv[0][1].bit)):
        if tally.count < threshold:
            continue
        reasons = usage.refusal_reasons.get((name, permission), Counter())
        why = ", ".join(f"{r} x{n}" for r, n in sorted(reasons.items()))
        found.append(
            Finding(
                "repeated-refusal",
                name,
                permission.value,
                tally.count,
                (tally.first_seq, tally.last_seq),
                f"{name} was refused {permission.value} {tally.count} times ({why}), "
                f"records {tally.first_seq}..{tally.last_seq}",
            )
        )
    return found


def review(policy: Policy, usage: LogUsage, refusal_threshold: int = DEFAULT_REFUSAL_THRESHOLD) -> Review:
    """Return the usage rows and every finding, in a stable order."""
    rows = usage_rows(policy, usage)
    findings = [
        Finding(
            "unused-grant",
            r.grant.principal,
            r.grant.permission.value,
            0,
            (),
            f"{r.grant.principal} holds {r.grant.permission.value} ({'; '.join(r.grant.sources)}) "
            "and did not use it in the window",
        )
        for r in rows
        if r.state == "unused"
    ]
    findings += _unused_roles(policy, usage)
    findings += _never_logged_in(policy, usage)
    findings += _refusals(usage, refusal_threshold)
    for end in usage.dual_control:
        by = f" by {end.by}" if end.by else ""
        findings.append(
            Finding(
                f"dual-control-{end.state.replace('_', '-')}",
                end.principal,
                end.permission,
                1,
                (end.seq,),
                f"{end.principal}'s dual-control request for {end.permission} on {end.resource} "
                f"was {end.state.replace('_', ' ')}{by} (record {end.seq})",
            )
        )
    for change in usage.policy_changes:
        verb = "changed the policy" if change.outcome == "allow" else "was refused a policy change"
        findings.append(
            Finding(
                "policy-change",
                change.by,
                change.how,
                1,
                (change.seq,),
                f"{change.time}: {change.by} {verb} ({change.how or 'unspecified'}) over {change.channel}: "
                f"{change.summary} (record {change.seq})",
            )
        )
    return Review(tuple(rows), tuple(findings), usage)
