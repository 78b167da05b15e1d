"""What a candidate policy would have done to the work people actually did.

Pure: replays every decided request of a :class:`~meterd.review.usage.LogUsage`
(aggregated counts included) against a candidate :class:`CompiledPolicy`,
deciding them in one batch in the native evaluator.  The log holds the same
request many times over; the evaluator is pure, so each distinct request is
decided once and weighted by its count.

The baseline is either what the log recorded (the outcome at the time) or,
with a current policy, that policy's own replay of the same requests (so only
the policy's difference shows).  A request the baseline allowed and the
candidate refuses is a *loss* of used access; one the baseline's policy
refused and the candidate allows is a *gain*.  Decisions a stateful rule made
(lockout period, dual control, session role limit, closed session, an
unavailable log) and refusal summaries that name no permission cannot be
replayed by a stateless evaluator: they are reported apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meterd.policy.compile import CompiledPolicy
from meterd.policy.model import Policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.policy.table import Verdict
from meterd.record import record
from meterd.review.usage import DecisionKey, LogUsage, Tally


@record
class AccessShift:
    """Requests of one principal, permission and channel that the candidate decides differently.

    Attributes:
        principal: Who.
        permission: What.
        channel: Through which channel.
        lost: True for used access the candidate refuses, False for access it newly allows.
        count: Requests affected (aggregated counts included).
        last_time: Newest affected request.
        last_seq: Its record.
        resources: Distinct resources affected, sorted.
        why: The candidate's verdicts for the losses (e.g. ``not_granted``), sorted.
    """

    principal: str
    permission: Permission
    channel: Channel
    lost: bool
    count: int
    last_time: str
    last_seq: int
    resources: tuple[str, ...]
    why: tuple[str, ...]


@record
class NotReplayed:
    """Decisions a replay cannot re-run, counted per principal, permission, channel and rule.

    Attributes:
        principal: Who (``anonymous`` for summaries).
        permission: What, or empty for refusal summaries that name none.
        channel: Where.
        rule: The stateful rule (a deny reason, ``dual_control`` for approved uses, ``summarised``).
        outcome: What the log recorded (``allow`` or ``deny``).
        count: Requests.
        candidate: The candidate's verdict on the policy part, or empty.
    """

    principal: str
    permission: str
    channel: str
    rule: str
    outcome: str
    count: int
    candidate: str


@record
class WhatIf:
    """The replay's result.

    Attributes:
        replayed: Requests replayed (aggregated counts included).
        distinct: Distinct requests decided by the evaluator.
        baseline: ``log`` or ``policy``.
        losses: Used access the candidate would refuse.
        gains: Access the candidate would newly allow.
        not_replayed: Decisions of stateful rules and summaries, apart.
        dual_control_changes: Permissions added to (``+``) or removed from (``-``)
            dual control, when a current policy is given.
    """

    replayed: int
    distinct: int
    baseline: str
    losses: tuple[AccessShift, ...]
    gains: tuple[AccessShift, ...]
    not_replayed: tuple[NotReplayed, ...]
    dual_control_changes: tuple[str, ...]

    @property
    def loses_used_access(self) -> bool:
        """True when anyone would lose access they used."""
        return bool(self.losses)


@dataclass(slots=True)
class _Shift:
    count: int = 0
    last_time: str = ""
    last_seq: int = 0
    resources: set[str] = field(default_factory=set)
    why: set[str] = field(default_factory=set)

    def add(self, key: DecisionKey, tally: Tally, verdict: Verdict) -> None:
        self.count += tally.count
        if tally.last_seq > self.last_seq:
            self.last_seq, self.last_time = tally.last_seq, tally.last_time
        self.resources.add(key.resource)
        if not verdict.allowed and verdict.deny_reason is not None:
            self.why.add(verdict.deny_reason.value)


def _shifts(shifts: dict[tuple[str, Permission, Channel], _Shift], lost: bool) -> tuple[AccessShift, ...]:
    return tuple(
        AccessShift(
            p,
            perm,
            ch,
            lost,
            s.count,
            s.last_time,
            s.last_seq,
            tuple(sorted(s.resources)),
            tuple(sorted(s.why)),
        )
        for (p, perm, ch), s in sorted(
            shifts.items(), key=lambda kv: (kv[0][0], kv[0][1].bit, kv[0][2].index)
        )
    )


def what_if(usage: LogUsage, candidate: CompiledPolicy, current: CompiledPolicy | None = None) -> WhatIf:
    """Replay the window's decisions against ``candidate`` (and ``current``, when given).

    Args:
        usage: The log window.
        candidate: The policy to try.
        current: The policy in force; without it the baseline is the logged outcome.

    Returns:
        What would change.
    """
    keys = list(usage.decisions)
    requests = [(k.principal, k.permission, k.resource, k.channel) for k in keys]
    after = candidate.verdicts(requests)
    before = current.verdicts(requests) if current is not None else None
    losses: dict[tuple[str, Permission, Channel], _Shift] = {}
    gains: dict[tuple[str, Permission, Channel], _Shift] = {}
    apart: dict[tuple[str, str, str, str, str, str], int] = {}
    replayed = 0
    for i, key in enumerate(keys):
        tally = usage.decisions[key]
        replayed += tally.count
        verdict = after[i]
        if key.stateful:
            row = (
                key.principal,
                key.permission.value,
                key.channel.value,
                key.stateful,
                "allow" if key.allowed else "deny",
                _verdict_text(verdict),
            )
            apart[row] = apart.get(row, 0) + tally.count
            continue
        was = key.allowed if before is None else before[i].allowed
        group = (key.principal, key.permission, key.channel)
        if was and not verdict.allowed:
            losses.setdefault(group, _Shift()).add(key, tally, verdict)
        elif not was and verdict.allowed:
            gains.setdefault(group, _Shift()).add(key, tally, verdict)
    for channel, tally in sorted(usage.summarised.items(), key=lambda kv: kv[0].index):
        row = ("anonymous", "", channel.value, "summarised", "deny", "")
        apart[row] = apart.get(row, 0) + tally.count
    return WhatIf(
        replayed=replayed,
        distinct=len(keys),
        baseline="log" if current is None else "policy",
        losses=_shifts(losses, True),
        gains=_shifts(gains, False),
        not_replayed=tuple(NotReplayed(*row[:5], count, row[5]) for row, count in sorted(apart.items())),
        dual_control_changes=_dual_control_changes(current.policy if current else None, candidate.policy),
    )


def _verdict_text(verdict: Verdict) -> str:
    return "allow" if verdict.allowed else (verdict.deny_reason.value if verdict.deny_reason else "deny")


def _dual_control_changes(current: Policy | None, candidate: Policy) -> tuple[str, ...]:
    if current is None:
        return ()
    was, now = current.constraints.dual_control, candidate.constraints.dual_control
    return tuple(
        [f"+ {p.value}" for p in sorted(now - was, key=lambda p: p.bit)]
        + [f"- {p.value}" for p in sorted(was - now, key=lambda p: p.bit)]
    )
