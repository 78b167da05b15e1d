"""The audit step: the only code that turns decisions and events into security-log records.

It maps a decision to its event type (:data:`ALLOW_EVENTS`), counts the
allows a channel asked to aggregate, applies the budget of records about
unauthenticated parties (:mod:`meterd.guard.evidence` is the pure budget;
what is over it is counted and summarised here), accounts for the
unauthenticated records in flight, decides who may use a full log's reserve,
and writes.  It is the only module of the guard that imports
:mod:`meterd.seclog`.

Invariants:
    * An allow whose record is not durable is returned as a denial
      (``log_unavailable``); aggregated allows are the one exception, and
      their count is written by :meth:`Audit.flush`.
    * A refusal of an unauthenticated party is either written or counted for
      a summary; it is never lost from the count, even when the log fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from meterd.errors import MeterdError
from meterd.guard.evidence import EvidenceBudget, SummaryKey
from meterd.guard.observer import GuardObserver
from meterd.guard.sessions import Session
from meterd.policy.compile import CompiledPolicy
from meterd.policy.grants import PrincipalKind
from meterd.policy.model import ANONYMOUS
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, DenyReason, Outcome
from meterd.seclog import EventType, Query, Record, SecurityLog
from meterd.seclog.errors import LogUnavailableError
from meterd.seclog.events import SYSTEM_PRINCIPAL, DetailValue
from meterd.seclog.events import PrincipalKind as LoggedKind
from meterd.seclog.verify import VerifyReport, verify

__all__ = [
    "ALLOW_EVENTS",
    "Audit",
    "Detail",
    "DetailValue",
    "EventType",
    "LogStatus",
    "Query",
    "Record",
    "SecurityLog",
    "VerifyReport",
    "allow_event",
    "principal_kind",
]

log = logging.getLogger(__name__)

Detail = Mapping[str, DetailValue]

#: The event an allowed use of a permission is recorded as, unless the channel says otherwise.
ALLOW_EVENTS: dict[Permission, EventType] = {
    Permission.PEAK_DEMAND_RESET: EventType.DEMAND_RESET,
    Permission.MASTER_RESET: EventType.MASTER_RESET,
    Permission.TEST_MODE_TOGGLE: EventType.VALUE_FORCING,
    Permission.TIME_SYNC: EventType.TIME_CHANGE,
    Permission.FIRMWARE_MANAGEMENT: EventType.FIRMWARE_CHANGE,
    Permission.FRONT_PANEL_RESTART: EventType.REBOOT,
    Permission.COMM_CONFIG: EventType.CONFIG_CHANGE,
    Permission.DSS_CONFIG: EventType.CONFIG_CHANGE,
    Permission.ION_MODULE_CONFIG: EventType.CONFIG_CHANGE,
    Permission.FRONT_PANEL_CONFIG: EventType.CONFIG_CHANGE,
    Permission.CERTIFICATE_MANAGEMENT: EventType.CONFIG_CHANGE,
    Permission.USER_MANAGEMENT: EventType.CONFIG_CHANGE,
    Permission.PASSWORD_SELF_MANAGEMENT: EventType.PASSWORD_CHANGE,
    Permission.SECURITY_LOGS_ACCESS: EventType.AUDIT_LOG_ACCESS,
}

WHY_LIMIT = 200
#: A record's size as far as the room for unauthenticated records is concerned (most are 300-550 bytes).
RECORD_ESTIMATE = 600
#: Where the security log lives in the scope tree (who may read it there keeps a full log serviceable).
LOG_RESOURCE = "/files/security-log"
_SESSION_EVENTS = frozenset({EventType.LOGIN_SUCCESS, EventType.LOGOUT_MANUAL, EventType.LOGOUT_TIMEOUT})


def allow_event(permission: Permission) -> EventType:
    """The event an allowed use of ``permission`` is recorded as by default."""
    return ALLOW_EVENTS.get(permission, EventType.ACCESS_DECISION)


def principal_kind(compiled: CompiledPolicy, name: str) -> PrincipalKind:
    """What sort of principal ``name`` is under ``compiled`` (unknown names count as users)."""
    if name == ANONYMOUS:
        return PrincipalKind.ANONYMOUS
    if name in compiled.policy.applications:
        return PrincipalKind.APPLICATION
    return PrincipalKind.USER


def _logged_kind(compiled: CompiledPolicy, name: str) -> LoggedKind:
    """The principal kind a record states: ``system`` for meterd itself, ``unknown`` for no principal."""
    if name == SYSTEM_PRINCIPAL:
        return LoggedKind.SYSTEM
    policy = compiled.policy
    if name != ANONYMOUS and not (
        name in policy.users or name in policy.applications or name in policy.directory_principals
    ):
        return LoggedKind.UNKNOWN
    return LoggedKind(principal_kind(compiled, name).value)


def _unauthenticated(kind: LoggedKind, event: EventType | None) -> bool:
    """True for a record about a party that has not authenticated (see :mod:`meterd.seclog.classes`)."""
    return (
        kind is LoggedKind.ANONYMOUS
        or kind is LoggedKind.UNKNOWN
        or event is EventType.LOGIN_FAILURE
        or event is EventType.ACCOUNT_LOCKED
    )


def _keeps_log(compiled: CompiledPolicy, principal: str, channel: Channel) -> bool:
    """Whether ``principal`` may read the security log on ``channel`` (side-effect free)."""
    try:
        return compiled.verdict(principal, Permission.SECURITY_LOGS_ACCESS, LOG_RESOURCE, channel).allowed
    except Exception:  # deciding who may use the reserve fails closed
        log.exception("evaluator failed while deciding the log reserve")
        return False


@dataclass(frozen=True, slots=True)
class LogStatus:
    """What ``show status`` says of the security log.

    Attributes:
        fill_percent: Used share of the capacity.
        warning_level: The highest configured fill warning reached (0: none).
        full: Appends are refused for capacity: recorded actions are refused
            until records are exported or acknowledged (``drop_exported``).
        failed: A write failed; the log refuses every append until restarted.
        full_policy: What the log does at capacity.
        unauthenticated_percent: Share of the capacity held by records about
            unauthenticated parties.
        acknowledged_seq: The highest seq an auditor acknowledged.
        head_seq: The last durable record.
        refusals_to_summarise: Counted refusals not yet written as summaries.
    """

    fill_percent: int
    warning_level: int
    full: bool
    failed: bool
    full_policy: str
    unauthenticated_percent: int
    acknowledged_seq: int
    head_seq: int
    refusals_to_summarise: int


@dataclass(frozen=True, slots=True)
class _Aggregate:
    principal: str
    channel: Channel
    permission: Permission
    resource: str


class Audit:
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
        kind = _logged_kind(compiled, principal)
        unauthenticated = budgeted or _unauthenticated(kind, event)
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
            or (event in _SESSION_EVENTS and _keeps_log(compiled, principal, channel))
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
        kind = _logged_kind(compiled, request.principal)
        if _unauthenticated(kind, event) and not self._admit_unauthenticated(
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
                and _keeps_log(compiled, request.principal, request.channel)
            )
        else:
            event = EventType.PERMISSION_DENIED
            if decision.detail:
                # The auditor sees the same reason the requester was given.
                detail = {**(detail or {}), "why": decision.detail[:WHY_LIMIT]}
        unauthenticated = _unauthenticated(kind, event)
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

    # -- the log's own state and contents ------------------------------------------

    @property
    def refusals_to_summarise(self) -> int:
        """Refusals of unauthenticated parties counted and not yet written: the log had no room yet."""
        return self._evidence.pending

    def status(self) -> LogStatus:
        """The security log's fill state (read-only, nothing recorded)."""
        seclog = self.seclog
        config = seclog.config
        percent = seclog.usage_bytes * 100 // config.capacity_bytes
        return LogStatus(
            fill_percent=percent,
            warning_level=seclog.warning_level,
            full=seclog.full,
            failed=seclog.failed,
            full_policy=config.full_policy.value,
            unauthenticated_percent=seclog.unauthenticated_bytes * 100 // config.capacity_bytes,
            acknowledged_seq=seclog.acknowledged_seq,
            head_seq=seclog.head_seq,
            refusals_to_summarise=self.refusals_to_summarise,
        )

    async def acknowledge(
        self, compiled: CompiledPolicy, session: Session, allowed: Decision, up_to: int
    ) -> int:
        """Record an auditor's acknowledgement durably, then move the mark.

        See :meth:`meterd.guard.Guard.acknowledge_log` for the arguments and errors.
        """
        request = allowed.request
        if (
            not allowed.allowed
            or request.permission is not Permission.SECURITY_LOGS_ACCESS
            or request.principal != session.principal
        ):
            raise ValueError("acknowledging the security log needs an allow of security_logs_access")
        head = self.seclog.head_seq
        if not 0 < up_to <= head:
            raise ValueError(f"seq {up_to} is not in the log (its head is {head})")
        if not await self.record(
            compiled,
            EventType.AUDIT_LOG_ACCESS,
            session.principal,
            Outcome.ALLOW,
            channel=session.channel,
            source=session.source,
            permission=Permission.SECURITY_LOGS_ACCESS,
            resource=request.resource,
            detail={"acknowledged_to": up_to},
        ):
            raise LogUnavailableError(
                "the acknowledgement could not be recorded; nothing was acknowledged", reason="failed"
            )
        return await asyncio.to_thread(self.seclog.acknowledge, up_to)

    async def read(self, allowed: Decision, query: Query) -> list[Record]:
        """The records ``query`` selects, for a reader holding an allow of ``security_logs_access``."""
        return await asyncio.to_thread(self.seclog.read, allowed, query)

    async def read_frames(self, allowed: Decision) -> bytes:
        """Every stored record line byte for byte (a copy that verifies), gated like :meth:`read`."""
        return await asyncio.to_thread(self.seclog.read_frames, allowed)

    async def checkpoint(self) -> int:
        """Seal a checkpoint of the log's head now; return its seq."""
        return await asyncio.to_thread(self.seclog.checkpoint)

    async def verify(self) -> VerifyReport:
        """Check the chain of the whole log (MACs need the auditor's key, off the meter)."""
        return await asyncio.to_thread(verify, self.seclog.directory)
