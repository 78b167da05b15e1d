"""The review, what-if and suggestion as data (JSON-ready), CSV and text tables.

Pure text work.  :func:`review_data` and :func:`what_if_data` are the one
source of every format: JSON prints them, CSV and the tables flatten them,
and the HTML report (:mod:`meterd.review.html`) draws them, so the formats
cannot disagree.  Keys are stable: scripts rely on them.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from meterd.policy.diff import AccessChange
from meterd.policy.permissions import BY_BIT
from meterd.review.findings import Review
from meterd.review.source import ReadLog
from meterd.review.suggest import Suggestion
from meterd.review.usage import LogUsage
from meterd.review.whatif import WhatIf

Data = dict[str, Any]


def window_data(read: ReadLog) -> Data:
    """The log window and how far it was verified."""
    usage: LogUsage = read.usage
    report = read.report
    return {
        "since": usage.since or None,
        "until": usage.until or None,
        "records": usage.records,
        "first_seq": usage.first_seq,
        "last_seq": usage.last_seq,
        "first_time": usage.first_time,
        "last_time": usage.last_time,
        "verified": report.ok,
        "mac_checked": report.mac_checked,
        "log_records": report.records,
        "warning": read.warning or None,
    }


def review_data(result: Review, read: ReadLog) -> Data:
    """Return the review as one JSON-ready mapping."""
    rows = [
        {
            "principal": r.grant.principal,
            "kind": r.grant.kind.value,
            "enabled": r.grant.enabled,
            "permission": r.grant.permission.value,
            "held": r.grant.held,
            "sources": list(r.grant.sources),
            "capped_on": [c.value for c in r.grant.capped_on],
            "uses": r.uses,
            "last_use": r.last_use or None,
            "last_seq": r.last_seq or None,
            "channels": list(r.channels),
            "refusals": r.refusals,
            "state": r.state,
        }
        for r in result.rows
    ]
    findings = [
        {
            "kind": f.kind,
            "principal": f.principal or None,
            "subject": f.subject or None,
            "count": f.count,
            "seqs": list(f.seqs),
            "message": f.message,
        }
        for f in result.findings
    ]
    counts: dict[str, int] = {}
    for f in result.findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    return {
        "window": window_data(read),
        "totals": {
            "uses": sum(r.uses for r in result.rows),
            "grants": sum(r.state in {"used", "unused"} and r.grant.held for r in result.rows),
            "used_grants": sum(r.state == "used" and r.grant.held for r in result.rows),
            "findings": len(findings),
            "by_kind": dict(sorted(counts.items())),
        },
        "rows": rows,
        "findings": findings,
    }


def what_if_data(result: WhatIf, read: ReadLog) -> Data:
    """Return the what-if as one JSON-ready mapping."""

    def shift(s: Any) -> Data:
        return {
            "principal": s.principal,
            "permission": s.permission.value,
            "channel": s.channel.value,
            "count": s.count,
            "last_time": s.last_time,
            "last_seq": s.last_seq,
            "resources": list(s.resources),
            "why": list(s.why),
        }

    return {
        "window": window_data(read),
        "baseline": result.baseline,
        "replayed": result.replayed,
        "distinct": result.distinct,
        "totals": {
            "lost": sum(s.count for s in result.losses),
            "gained": sum(s.count for s in result.gains),
            "not_replayed": sum(n.count for n in result.not_replayed),
        },
        "losses": [shift(s) for s in result.losses],
        "gains": [shift(s) for s in result.gains],
        "not_replayed": [
            {
                "principal": n.principal,
                "permission": n.permission or None,
                "channel": n.channel,
                "rule": n.rule,
                "outcome": n.outcome,
                "count": n.count,
                "candidate": n.candidate or None,
            }
            for n in result.not_replayed
        ],
        "dual_control_changes": list(result.dual_control_changes),
    }


def suggest_data(
    suggestions: list[Suggestion], changes: list[AccessChange], read: ReadLog, baseline: str = "policy"
) -> Data:
    """Return the suggestion as one JSON-ready mapping.

    ``baseline`` is ``policy`` (the diff is against the policy in force) or
    ``builtin`` (no policy given: built-in roles only, every grant new, ``was`` unknown).
    """
    return {
        "window": window_data(read),
        "baseline": baseline,
        "suggestions": [
            {
                "subject": s.subject,
                "used": sorted(p.value for p in s.used),
                "roles": list(s.roles),
                "was": list(s.was),
                "custom": s.custom,
            }
            for s in suggestions
        ],
        "diff": [c.render() for c in changes],
    }


def to_json(data: Data) -> str:
    """Render any of the mappings above as indented JSON."""
    return json.dumps(data, indent=2)


def _csv(header: list[str], rows: list[list[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def review_csv(data: Data) -> str:
    """One line per principal and permission, then one per finding (``section`` tells them apart)."""
    header = ["section", "principal", "permission", "held", "uses", "last_use", "last_seq", "channels"]
    header += ["refusals", "state", "sources", "finding", "message"]
    rows: list[list[object]] = [
        [
            "usage",
            r["principal"],
            r["permission"],
            "yes" if r["held"] else "no",
            r["uses"],
            r["last_use"] or "",
            r["last_seq"] or "",
            " ".join(r["channels"]),
            r["refusals"],
            r["state"],
            "; ".join(r["sources"]),
            "",
            "",
        ]
        for r in data["rows"]
    ]
    rows += [
        [
            "finding",
            f["principal"] or "",
            f["subject"] or "",
            "",
            f["count"],
            "",
            " ".join(map(str, f["seqs"])),
            "",
            "",
            "",
            "",
            f["kind"],
            f["message"],
        ]
        for f in data["findings"]
    ]
    return _csv(header, rows)


def what_if_csv(data: Data) -> str:
    """One line per change (``lost`` / ``gained``) and per decision not replayed."""
    header = ["change", "principal", "permission", "channel", "count", "last_time", "last_seq", "detail"]
    rows: list[list[object]] = []
    for change, items in (("lost", data["losses"]), ("gained", data["gains"])):
        rows += [
            [
                change,
                s["principal"],
                s["permission"],
                s["channel"],
                s["count"],
                s["last_time"],
                s["last_seq"],
                " ".join(s["why"] or s["resources"]),
            ]
            for s in items
        ]
    rows += [
        [
            "not_replayed",
            n["principal"],
            n["permission"] or "",
            n["channel"],
            n["count"],
            "",
            "",
            f"{n['rule']} ({n['outcome']})",
        ]
        for n in data["not_replayed"]
    ]
    return _csv(header, rows)


def suggest_csv(data: Data) -> str:
    """One line per subject (proposed and current roles, used permissions), then one per access change."""
    rows: list[list[object]] = [
        [
            "suggestion",
            s["subject"],
            " ".join(s["roles"]),
            " ".join(s["was"]),
            " ".join(s["used"]),
            "yes" if s["custom"] else "no",
        ]
        for s in data["suggestions"]
    ]
    rows += [["change", line, "", "", "", ""] for line in data["diff"]]
    return _csv(["section", "subject", "roles", "was", "used", "custom"], rows)


def _window_line(window: Data) -> str:
    macs = "MACs checked" if window["mac_checked"] else "MACs NOT checked (no --key-file)"
    state = "verified" if window["verified"] else "DOES NOT VERIFY"
    return (
        f"log {state}, {macs}; window records {window['first_seq']}..{window['last_seq']} "
        f"({window['records']}), {window['first_time']} .. {window['last_time']}"
    )


def review_table(data: Data) -> str:
    """The matrix (``U`` used, ``-`` held and unused, ``r`` refused, ``.`` nothing), then findings."""
    bits = sorted(BY_BIT)
    by_principal: dict[str, dict[str, Data]] = {}
    for r in data["rows"]:
        by_principal.setdefault(r["principal"], {})[r["permission"]] = r
    width = max([len(n) + 2 for n in by_principal] + [11])
    header = "principal".ljust(width) + " ".join(f"{b:>2}" for b in bits)
    lines = [_window_line(data["window"]), "", header, "-" * len(header)]
    mark = {"used": " U", "unused": " -", "refused": " r", "none": " ."}
    for name, cells in by_principal.items():
        lines.append(name.ljust(width) + " ".join(mark[cells[BY_BIT[b].value]["state"]] for b in bits))
    lines += ["", "U = held and used, - = held and unused, r = refused, . = neither"]
    lines += [f"{b:>2} = {BY_BIT[b].value}" for b in bits]
    lines += ["", "uses (principal permission: uses, last use, channels):"]
    lines += [
        f"  {r['principal']} {r['permission']}: {r['uses']}, {r['last_use']} (seq {r['last_seq']}), "
        f"{' '.join(r['channels'])}"
        for r in data["rows"]
        if r["uses"]
    ]
    lines += ["", f"findings ({len(data['findings'])}):"]
    lines += [f"  {f['kind']}: {f['message']}" for f in data["findings"]]
    return "\n".join(lines) + "\n"


def what_if_table(data: Data) -> str:
    """Losses, gains and what was not replayed, one line each."""
    lines = [_window_line(data["window"])]
    lines.append(
        f"replayed {data['replayed']} decisions ({data['distinct']} distinct) against the candidate; "
        f"baseline: {'the logged outcomes' if data['baseline'] == 'log' else 'the current policy'}"
    )
    for title, key in (("would lose used access", "losses"), ("would gain access", "gains")):
        items = data[key]
        lines += ["", f"{title} ({len(items)}):"]
        lines += [
            f"  {s['principal']} {s['permission']} on {s['channel']}: {s['count']} requests, "
            f"last {s['last_time']} (seq {s['last_seq']})"
            + (f" -> {', '.join(s['why'])}" if s["why"] else "")
            for s in items
        ]
    apart = data["not_replayed"]
    lines += ["", f"not replayed: decided by stateful rules or summarised ({len(apart)}):"]
    lines += [
        f"  {n['principal']} {n['permission'] or '(no permission recorded)'} on {n['channel']}: "
        f"{n['count']} {n['outcome']} by {n['rule']}"
        + (f"; candidate policy: {n['candidate']}" if n["candidate"] else "")
        for n in apart
    ]
    if data["dual_control_changes"]:
        lines += ["", "dual control: " + ", ".join(data["dual_control_changes"])]
    return "\n".join(lines) + "\n"


def suggest_table(data: Data) -> str:
    """One line per subject, then the diff in ``policy diff`` format."""
    lines = [_window_line(data["window"]), ""]
    builtin = data["baseline"] == "builtin"
    if builtin:
        lines += [
            "no policy given (--policy): roles proposed from the built-in roles, for the principals "
            "the log shows using something; current roles and scopes unknown",
            "",
        ]
    for s in data["suggestions"]:
        custom = " (new custom role)" if s["custom"] else ""
        roles, was, used = (", ".join(s[k]) for k in ("roles", "was", "used"))
        was = "unknown" if builtin else was or "(none)"
        lines.append(f"{s['subject']}: {roles or '(no roles)'}{custom}; was {was}; used {used or 'nothing'}")
    lines += ["", "grants of the suggested policy:" if builtin else "diff against the policy:", *data["diff"]]
    lost = sum(1 for d in data["diff"] if d.startswith("-"))
    lines.append(f"{len(data['diff']) - lost} gained, {lost} lost")
    return "\n".join(lines) + "\n"
