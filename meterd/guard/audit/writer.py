"""The audit step's writing: decisions and other records, aggregated allows, summarised refusals.

Invariants:
    * An allow whose record is not durable is returned as a denial
      (``log_unavailable``); aggregated allows are the one exception, and
      their count is written by :meth:`AuditWriter.flush`.
    * A refusal of an unauthenticated party is either written or counted for
      a summary; it is never lost from the count, even when the log fails.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from meterd.errors import MeterdError
from meterd.guard.audit.events import (
    RECORD_ESTIMATE,
    SESSION_EVENTS,
    WHY_LIMIT,
    Detail,
    allow_event,
    is_unauthenticated,
    keeps_log,
    logged_kind,
)
from meterd.guard.evidence import EvidenceBudget, SummaryKey
from meterd.guard.observer import GuardObserver
from meterd.policy.compile import CompiledPolicy
from meterd.policy.model import ANONYMOUS
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, DenyReason, Outcome
from meterd.seclog import EventType, SecurityLog
from meterd.seclog.events import PrincipalKind as LoggedKind

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Aggregate:
    principal: str
    channel: Channel
    permission: Permission
    resource: str


class AuditWriter:
    """Writes every record of one guard, and counts what it does not write one by one.

    Args:
        seclog: The security log.
        observer: Metrics sink (one ``decision`` per decision, summarised refusals).
        monotonic: Clock for the evidence budget's intervals.
        wall: Clock for the first/last times of summarised refusals.
    """

    def __init__(
        self,
        seclog: SecurityLog,
        observer: GuardObserver,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.seclog = seclog
        self.observer = observer
        self._monotonic = monotonic
        self._wall = wall
        self._aggregates: Counter[_Aggregate] = Counter()
        self._unauthenticated_in_flight = 0
        config = seclog.config
        self._evidence: EvidenceBudget[EventType] = EvidenceBudget(
            config.unauthenticated_records,
            config.unauthenticated_records_total,
            config.unauthenticated_interval,
        )

    @property
    def failed(self) -> bool:
        """The log refuses every append until restarted (aggregating allows would hide that)."""
        return self.seclog.failed

    async def record(
        self,
        compiled: CompiledPolicy,
        event: EventType,
        principal: str,
        outcome: Outcome,
        *,
        channel: Channel,
        source: str = "",
        permission: Permission | None = None,
        resource: str = "",
        detail: Detail | None = None,
        budgeted: bool = False,
    ) -> bool:
        """Append a record that is not a decision (login, logout, an action's result).

        A refusal of an unauthenticated party (or one the channel marks
        ``budgeted``: a probe on a connection no session was granted) past its
        budget is counted for the sweep's summary instead (see
        :mod:`meterd.guard.evidence`).

        Returns:
            False if the log could not take it (the caller must then fail closed).
        """
        kind = logged_kind(compiled, principal)
        unauthenticated = budgeted or is_unauthenticated(kind, event)
        key = SummaryKey(source, channel, event, "")
        if unauthenticated:
            reason = str((detail or {}).get("reason") or (detail or {}).get("refused") or "")
            key = SummaryKey(source, channel, event, reason[:WHY_LIMIT])
            if not self._admit_unauthenticated(source, outcome):
                if outcome is Outcome.ALLOW:
                    log.error("security log has no room for an unauthenticated %s record", event.value)
                    return False
                self._count_refusal(key)
                return True
        reserve = outcome is Outcome.ALLOW and (
            permission is Permission.SECURITY_LOGS_ACCESS
            or (event in SESSION_EVENTS and keeps_log(compiled, principal, channel))
        )
        try:
            async with self._in_flight(unauthenticated):
                await self.seclog.append_async(
                    event,
                    principal=principal,
                    outcome=outcome,
                    channel=channel,
                    source=source,
                    permission=permission,
                    resource=resource,
                    detail=detail,
                    principal_kind=kind,
                    reserve=reserve,
                )
        except MeterdError as e:
            log.error("security log refused a %s record: %s", event.value, e)
            if unauthenticated and outcome is not Outcome.ALLOW:
                self._count_refusal(key)  # not written, but never lost from the count
            return False
        return True

    async def commit(
        self, compiled: CompiledPolicy, decision: Decision, event: EventType | None, detail: Detail | None
    ) -> Decision:
        """Record a decision; an allow whose record is not durable becomes a denial.

        Args:
            compiled: The policy the decision was made under (says who the principal is).
            decision: What was decided.
            event: How an allow is recorded (None: by its permission); refusals
                are always ``permission_denied``.
            detail: Small, secret-free facts for the record.
        """
        request = decision.request
        kind = logged_kind(compiled, request.principal)
        if is_unauthenticated(kind, event) and not self._admit_unauthenticated(
            request.source, decision.outcome
        ):
            if not decision.allowed:
                reason = decision.reason.value if decision.reason else ""
                self._count_refusal(
                    SummaryKey(request.source, request.channel, EventType.PERMISSION_DENIED, reason)
                )
                self.observer.decision(request.channel, request.permission, decision.outcome)
                return decision
            log.error(
                "security log has no room for unauthenticated records, denying %s", request.permission.value
            )
            decision = Decision(
                request,
                Outcome.DENY,
                DenyReason.LOG_UNAVAILABLE,
                "security log has no room for unauthenticated records",
            )
            self.observer.decision(request.channel, request.permission, decision.outcome)
            return decision
        reserve = False
        if event is None and decision.allowed:
            event = allow_event(request.permission)
        if decision.allowed:
            # An auditor's work on the log (and the shell it works from) may use a full log's reserve.
            permission = request.permission
            reserve = permission is Permission.SECURITY_LOGS_ACCESS or (
                permission is Permission.TERMINAL_ACCESS
                and keeps_log(compiled, request.principal, request.channel)
            )
        else:
            event = EventType.PERMISSION_DENIED
            if decision.detail:
                # The auditor sees the same reason the requester was given.
                detail = {**(detail or {}), "why": decision.detail[:WHY_LIMIT]}
        unauthenticated = is_unauthenticated(kind, event)
        try:
            async with self._in_flight(unauthenticated):
                await self.seclog.append_decision_async(
                    decision, event=event, detail=detail, principal_kind=kind, reserve=reserve
                )
        except MeterdError as e:
            log.error("security log unavailable, denying %s: %s", request.permission.value, e)
            if unauthenticated and not decision.allowed:
                reason = decision.reason.value if decision.reason else ""
                self._count_refusal(
                    SummaryKey(request.source, request.channel, EventType.PERMISSION_DENIED, reason)
                )
            decision = Decision(request, Outcome.DENY, DenyReason.LOG_UNAVAILABLE, "security log unavailable")
        self.observer.decision(request.channel, request.permission, decision.outcome)
        return decision

    def count(self, decision: Decision) -> Decision:
        """Count an allow for :meth:`flush` instead of recording it now."""
        request = decision.request
        self._aggregates[
            _Aggregate(request.principal, request.channel, request.permission, request.resource)
        ] += 1
        self.observer.decision(request.channel, request.permission, decision.outcome)
        return decision

    async def flush(self, compiled: CompiledPolicy, *, final: bool) -> None:
        """Record the aggregated allows, then the summaries of counted refusals when due.

        What the log cannot take now is kept for the next flush: counts are never lost.
        """
        aggregates, self._aggregates = self._aggregates, Counter()
        for key, count in sorted(aggregates.items(), key=lambda kv: (kv[0].principal, kv[0].resource)):
            if not await self.record(
                compiled,
                EventType.ACCESS_DECISION,
                key.principal,
                Outcome.ALLOW,
                channel=key.channel,
                permission=key.permission,
                resource=key.resource,
                detail={"aggregated": count},
            ):
                self._aggregates[key] += count
        await self._write_summaries(final=final)

    def _admit_unauthenticated(self, source: str, outcome: Outcome) -> bool:
        """Whether a record about an unauthenticated party may be written now.

        A refusal needs its source's budget and room in the log; an allow (an
        action that changed something) needs only the room, and is refused
        without it.  The room counts the records admitted and not yet written,
        so a burst admitted in one turn of the loop cannot overrun it.
        """
        if outcome is not Outcome.ALLOW and not self._evidence.admit(source, self._monotonic()):
            return False
        return self.seclog.room_for_unauthenticated(RECORD_ESTIMATE + self._unauthenticated_in_flight)

    @contextlib.asynccontextmanager
    async def _in_flight(self, unauthenticated: bool) -> AsyncIterator[None]:
        """Count an unauthenticated record against the room while its append is under way."""
        size = RECORD_ESTIMATE if unauthenticated else 0
        self._unauthenticated_in_flight += size
        try:
            yield
        finally:
            self._unauthenticated_in_flight -= size

    def _count_refusal(self, key: SummaryKey[EventType]) -> None:
        self._evidence.count(key, self._wall())
        self.observer.refusal_summarised(key.channel)

    async def _write_summaries(self, *, final: bool) -> None:
        """Write one record per counted key when due (or ``final``); keep what the log has no room for."""
        if not (self._evidence.due(self._monotonic()) or final):
            return
        for key, tally in self._evidence.drain():
            written = False
            if self.seclog.room_for_unauthenticated(RECORD_ESTIMATE + self._unauthenticated_in_flight):
                try:
                    await self.seclog.append_async(
                        key.event,
                        principal=ANONYMOUS,
                        outcome=Outcome.DENY,
                        channel=key.channel,
                        source=key.source,
                        detail={
                            "summarised": tally.count,
                            "reason": key.reason,
                            "first": int(tally.first),
                            "last": int(tally.last),
                        },
                        principal_kind=LoggedKind.ANONYMOUS,
                    )
                    written = True
                except MeterdError as e:
                    log.error("security log refused a summary record: %s", e)
            if not written:
                self._evidence.give_back(key, tally)

    @property
    def refusals_to_summarise(self) -> int:
        """Refusals of unauthenticated parties counted and not yet written: the log had no room yet."""
        return self._evidence.pending
