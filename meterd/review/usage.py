"""What the security log says people did: uses, logins, refusals, dual control, policy changes.

Pure: a :class:`UsageCollector` is fed records in log order (by a reader that
verified them, see :mod:`meterd.review.source`) and returns a
:class:`LogUsage`.  Nothing here reads files.

What counts:
    * A *decision* is a record of the guard deciding a permission: it names a
      known permission and is either an allow or a ``permission_denied``
      record.  The ``awaiting_approval`` record of a dual-control request is
      not one (its final allow or refusal is); an ``error`` record after an
      allow (the meter action failed) is not one either.
    * An allow with ``detail.aggregated = N`` stands for N allows (the guard
      counts measurement polling); a refusal summary with
      ``detail.summarised = N`` stands for N refusals of unauthenticated
      parties and names no permission, so it is counted apart.
    * Only records inside the window ``[since, until)`` count.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from meterd.policy.permissions import BY_ID, Permission
from meterd.policy.request import Channel, Outcome
from meterd.record import record
from meterd.seclog.events import EventType, Record

#: Refusal reasons that come from the guard's stateful rules, not from the policy table.
STATEFUL_REASONS = frozenset(
    {"lockout_period", "dual_control", "role_limit", "session_closed", "log_unavailable"}
)
_REJECTED_BY = re.compile(r"rejected by (\S+)")


@record
class DecisionKey:
    """One distinct request as decided: who asked what, where, through which channel."""

    principal: str
    permission: Permission
    resource: str
    channel: Channel
    allowed: bool
    #: The stateful rule that decided (a deny reason), ``dual_control`` for an approved use, or empty.
    stateful: str


@dataclass(slots=True)
class Tally:
    """How many records (weighted by aggregation) and the newest of them.

    Attributes:
        count: Requests.
        first_seq: Seq of the oldest record counted.
        last_seq: Seq of the newest record counted.
        last_time: Time of the newest record counted.
    """

    count: int = 0
    first_seq: int = 0
    last_seq: int = 0
    last_time: str = ""

    def add(self, record: Record, weight: int, first_seq: int = 0) -> None:
        """Count ``weight`` requests of ``record`` (of records from ``first_seq`` to it, if given).

        Records come in log order, or runs of them in order of their first records.
        """
        self.count += weight
        if not self.first_seq:
            self.first_seq = first_seq or record.seq
        if record.seq > self.last_seq:
            self.last_seq = record.seq
            self.last_time = record.time


@record
class DualControlEnd:
    """A dual-control request that did not go through.

    Attributes:
        seq: The requester's final record.
        time: Its time.
        principal: The requester.
        permission: What was asked.
        resource: Where.
        state: ``rejected``, ``timed_out`` or ``abandoned``.
        by: Who rejected it (``rejected`` only).
    """

    seq: int
    time: str
    principal: str
    permission: str
    resource: str
    state: str
    by: str = ""


@record
class PolicyChange:
    """A ``policy_change`` record: who changed the policy (or tried to), how, and what it did.

    Attributes:
        seq: The record.
        time: Its time.
        by: The principal who made the change.
        channel: Where from.
        outcome: ``allow`` (in force) or ``deny`` (refused).
        how: push, rollback, reload, an edit in the shell.
        summary: The record's detail as ``key=value`` text (version, gained, lost, changes).
    """

    seq: int
    time: str
    by: str
    channel: str
    outcome: str
    how: str
    summary: str


@dataclass(slots=True)
class LogUsage:
    """Everything the review, the what-if and the suggestion need from the log window.

    Attributes:
        since: Window start as logged time text (empty: the log's start).
        until: Window end, exclusive (empty: the log's end).
        records: Records in the window.
        first_seq: Oldest record in the window (0 if none).
        last_seq: Newest record in the window.
        first_time: Time of the oldest.
        last_time: Time of the newest.
        decisions: Tallies of distinct decided requests.
        uses: Allows per (principal, permission) with the channels used.
        channels: Channels of the allows per (principal, permission).
        logins: Successful logins per principal.
        refusals: Refusals per (principal, permission), with the reasons.
        refusal_reasons: Reasons counted per (principal, permission).
        summarised: Refusals of unauthenticated parties counted in summaries, per channel.
        dual_control: Dual-control requests rejected, timed out or abandoned.
        policy_changes: Policy changes and refused attempts.
        kinds: The principal kind (``user``, ``application``...) of each principal allowed something.
    """

    since: str = ""
    until: str = ""
    records: int = 0
    first_seq: int = 0
    last_seq: int = 0
    first_time: str = ""
    last_time: str = ""
    decisions: dict[DecisionKey, Tally] = field(default_factory=dict)
    uses: dict[tuple[str, Permission], Tally] = field(default_factory=dict)
    channels: dict[tuple[str, Permission], set[Channel]] = field(default_factory=dict)
    logins: dict[str, Tally] = field(default_factory=dict)
    refusals: dict[tuple[str, Permission], Tally] = field(default_factory=dict)
    refusal_reasons: dict[tuple[str, Permission], Counter[str]] = field(default_factory=dict)
    summarised: dict[Channel, Tally] = field(default_factory=dict)
    dual_control: list[DualControlEnd] = field(default_factory=list)
    policy_changes: list[PolicyChange] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)


def _weight(record: Record, key: str) -> int:
    value = record.detail.get(key)
    return value if type(value) is int and value > 0 else 1


class UsageCollector:
    """Accumulates :class:`LogUsage` from records fed in log order.

    Args:
        since: Window start in the log's time format (inclusive), or empty.
        until: Window end (exclusive), or empty.
    """

    def __init__(self, since: str = "", until: str = "") -> None:
        self.usage = LogUsage(since=since, until=until)
        self._since = since
        self._until = until

    def add(self, record: Record, times: int = 1, first: tuple[int, str] | None = None) -> None:
        """Count one record (ignored outside the window), or ``times`` records alike.

        Args:
            record: The record (with ``times``: the last of them, all in the window).
            times: How many records with the same fields as ``record``.
            first: ``(seq, time)`` of the first of them (with ``times``).

        Records come in log order, or runs of alike records in the order of
        their first records; a record that ends a dual-control request or
        changes the policy comes alone (it is listed, not only counted).
        """
        if (self._since and record.time < self._since) or (self._until and record.time >= self._until):
            return
        usage = self.usage
        usage.records += times
        first_seq, first_time = first or (record.seq, record.time)
        if not usage.first_seq or first_seq < usage.first_seq:
            usage.first_seq, usage.first_time = first_seq, first_time
        if record.seq > usage.last_seq:
            usage.last_seq, usage.last_time = record.seq, record.time
        event = record.event
        if event is EventType.LOGIN_SUCCESS:
            usage.logins.setdefault(record.principal, Tally()).add(record, times, first_seq)
        elif event is EventType.POLICY_CHANGE:
            self._policy_change(record)
        permission = BY_ID.get(record.permission)
        if permission is None:
            if "summarised" in record.detail and event is EventType.PERMISSION_DENIED:
                usage.summarised.setdefault(record.channel, Tally()).add(
                    record, _weight(record, "summarised") * times, first_seq
                )
            return
        allowed = record.outcome is Outcome.ALLOW
        if allowed and record.detail.get("state") == "awaiting_approval":
            return
        if not allowed and event is not EventType.PERMISSION_DENIED:
            return
        self._decision(record, permission, allowed, times, first_seq)

    def _decision(
        self, record: Record, permission: Permission, allowed: bool, times: int, first: int
    ) -> None:
        usage = self.usage
        detail = record.detail
        reason = str(detail.get("reason") or "")
        if allowed:
            stateful = "dual_control" if "approved_by" in detail else ""
        else:
            stateful = reason if reason in STATEFUL_REASONS else ""
        key = DecisionKey(record.principal, permission, record.resource, record.channel, allowed, stateful)
        weight = _weight(record, "aggregated" if allowed else "summarised") * times
        usage.decisions.setdefault(key, Tally()).add(record, weight, first)
        pair = (record.principal, permission)
        if allowed:
            if pair not in usage.uses:
                usage.kinds[record.principal] = record.principal_kind.value
            usage.uses.setdefault(pair, Tally()).add(record, weight, first)
            usage.channels.setdefault(pair, set()).add(record.channel)
            return
        usage.refusals.setdefault(pair, Tally()).add(record, weight, first)
        usage.refusal_reasons.setdefault(pair, Counter())[reason or "unknown"] += weight
        if reason == "dual_control" and "dual_control" in detail:
            self._dual_control_end(record)

    def _dual_control_end(self, record: Record) -> None:
        why = str(record.detail.get("why") or "")
        rejected = _REJECTED_BY.search(why)
        if rejected:
            state, by = "rejected", rejected.group(1)
        elif "not approved within" in why:
            state, by = "timed_out", ""
        else:
            state, by = "abandoned", ""
        self.usage.dual_control.append(
            DualControlEnd(
                record.seq, record.time, record.principal, record.permission, record.resource, state, by
            )
        )

    def _policy_change(self, record: Record) -> None:
        detail = record.detail
        summary = " ".join(f"{k}={v}" for k, v in detail.items() if k != "how")
        self.usage.policy_changes.append(
            PolicyChange(
                record.seq,
                record.time,
                record.principal,
                record.channel.value,
                record.outcome.value,
                str(detail.get("how") or detail.get("change") or ""),
                summary,
            )
        )
