"""The guard: decides, applies the stateful rules, records, counts.

Invariants:
    * Every call that decides returns a :class:`Decision`; it never raises for
      a refusal, and any unexpected error while deciding is a refusal
      (``Outcome.ERROR``), recorded where the log allows.
    * Nothing is allowed unless its record is durable in the security log
      (except aggregated allows, whose count is recorded by :meth:`sweep`).
    * The policy in force is swapped in one step (:meth:`install_policy`);
      each request uses the policy current when it is decided, so revoking a
      role or disabling a user takes effect at the next request of an open session.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from meterd.errors import MeterdError
from meterd.guard.credential_checks import credential_checks
from meterd.guard.credentials import Credential, PublicKey, check_credential, counts_toward_lockout
from meterd.guard.demand_window import DemandResetWindow, Reservation
from meterd.guard.dual_control import DualControl, PendingApproval
from meterd.guard.evidence import EvidenceBudget, SummaryKey
from meterd.guard.lockout import LoginLockout
from meterd.guard.observer import GuardObserver, NullObserver
from meterd.guard.sessions import Session, SessionRegistry
from meterd.policy.compile import CompiledPolicy
from meterd.policy.credentials import Credentials, initial_credentials
from meterd.policy.grants import PrincipalKind, grants_of
from meterd.policy.model import ANONYMOUS
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, DenyReason, Outcome, Request
from meterd.policy.scope import contains
from meterd.seclog import EventType, SecurityLog
from meterd.seclog.errors import LogUnavailableError
from meterd.seclog.events import SYSTEM_PRINCIPAL, DetailValue
from meterd.seclog.events import PrincipalKind as LoggedKind

log = logging.getLogger(__name__)

Detail = Mapping[str, DetailValue]
PendingCallback = Callable[[PendingApproval], None]

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


def _scopes_below(compiled: CompiledPolicy, principal: str, resource: str) -> set[str]:
    """The principal's grant scopes that lie strictly below ``resource``."""
    return {
        scope
        for grant in grants_of(compiled.policy, principal)
        for scope in grant.scopes
        if scope != resource and contains(resource, scope)
    }


def _kind(compiled: CompiledPolicy, name: str) -> PrincipalKind:
    if name == ANONYMOUS:
        return PrincipalKind.ANONYMOUS
    if name in compiled.policy.applications:
        return PrincipalKind.APPLICATION
    return PrincipalKind.USER


def _logged_kind(compiled: CompiledPolicy, name: str) -> LoggedKind:
    """The principal kind a record states: ``system`` for meterd itself, ``unknown`` for no principal."""
    if name == SYSTEM_PRINCIPAL:
        return LoggedKind.SYSTEM
    if name != ANONYMOUS and name not in compiled.policy.users and name not in compiled.policy.applications:
        return LoggedKind.UNKNOWN
    return LoggedKind(_kind(compiled, name).value)


def _unauthenticated(kind: LoggedKind, event: EventType | None) -> bool:
    """True for a record about a party that has not authenticated (see :mod:`meterd.seclog.classes`)."""
    return (
        kind is LoggedKind.ANONYMOUS
        or kind is LoggedKind.UNKNOWN
        or event is EventType.LOGIN_FAILURE
        or event is EventType.ACCOUNT_LOCKED
    )


#: Where the security log lives in the scope tree (who may read it there keeps a full log serviceable).
LOG_RESOURCE = "/files/security-log"
_SESSION_EVENTS = frozenset({EventType.LOGIN_SUCCESS, EventType.LOGOUT_MANUAL, EventType.LOGOUT_TIMEOUT})


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


class Guard:
    """The single decision point.  All methods run on the daemon's event loop.

    Args:
        compiled: The policy in force.
        seclog: The security log every decision is recorded in.
        observer: Metrics sink.
        monotonic: Clock for idle timeouts and login lockouts.
        wall: Clock for the demand-reset lockout period (it must survive restarts).
        last_demand_reset: Wall time of the last peak-demand reset, from the meter.
        policy_version: The policy-store version of ``compiled``.
        credentials: The meter's local credentials (default: those ``compiled``'s policy carries).
    """

    def __init__(
        self,
        compiled: CompiledPolicy,
        seclog: SecurityLog,
        *,
        observer: GuardObserver | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        last_demand_reset: float | None = None,
        policy_version: int | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self._compiled = compiled
        self._credentials = credentials if credentials is not None else initial_credentials(compiled.policy)
        #: The policy-store version in force (follows push, rollback, shell edits and reload).
        self.policy_version = policy_version or 0
        self.seclog = seclog
        self.observer: GuardObserver = observer or NullObserver()
        self._monotonic = monotonic
        self._wall = wall
        self.sessions = SessionRegistry()
        self.lockout = LoginLockout()
        self.dual_control = DualControl()
        self.demand_window = DemandResetWindow(last_demand_reset)
        # The reset allowed last and not yet known to have happened: released if its action fails.
        self._reserved_reset: tuple[Request, Reservation] | None = None
        self._aggregates: Counter[_Aggregate] = Counter()
        self._unauthenticated_in_flight = 0
        self._sweep_task: asyncio.Future[None] | None = None
        config = seclog.config
        self._evidence = EvidenceBudget(
            config.unauthenticated_records,
            config.unauthenticated_records_total,
            config.unauthenticated_interval,
        )
        if policy_version is not None:
            self.observer.policy_in_force(policy_version, compiled.policy.version)

    # -- policy -----------------------------------------------------------

    @property
    def compiled(self) -> CompiledPolicy:
        """The policy in force."""
        return self._compiled

    def install_policy(self, compiled: CompiledPolicy, version: int | None = None) -> CompiledPolicy:
        """Put ``compiled`` in force in one step; return the policy it replaced.

        Args:
            compiled: The new policy.
            version: Its policy-store version (None: a policy that was not stored, in tests).
        """
        previous, self._compiled = self._compiled, compiled
        if version is not None:
            self.policy_version = version
        self.observer.policy_in_force(self.policy_version, compiled.policy.version)
        return previous

    @property
    def credentials(self) -> Credentials:
        """The local credentials in force."""
        return self._credentials

    def install_credentials(self, credentials: Credentials) -> None:
        """Put a new credentials snapshot in force in one step (checks under way keep the old one)."""
        self._credentials = credentials

    # -- recording --------------------------------------------------------

    async def record(
        self,
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
        compiled = self._compiled
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
            or (event in _SESSION_EVENTS and self._keeps_log(compiled, principal, channel))
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

    async def _commit(self, decision: Decision, event: EventType | None, detail: Detail | None) -> Decision:
        """Record a decision; an allow whose record is not durable becomes a denial."""
        request = decision.request
        kind = _logged_kind(self._compiled, request.principal)
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
            event = ALLOW_EVENTS.get(request.permission, EventType.ACCESS_DECISION)
        if decision.allowed:
            # An auditor's work on the log (and the shell it works from) may use a full log's reserve.
            permission = request.permission
            reserve = permission is Permission.SECURITY_LOGS_ACCESS or (
                permission is Permission.TERMINAL_ACCESS
                and self._keeps_log(self._compiled, request.principal, request.channel)
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

    @staticmethod
    def _keeps_log(compiled: CompiledPolicy, principal: str, channel: Channel) -> bool:
        """Whether ``principal`` may read the security log on ``channel`` (side-effect free)."""
        try:
            return compiled.verdict(principal, Permission.SECURITY_LOGS_ACCESS, LOG_RESOURCE, channel).allowed
        except Exception:  # deciding who may use the reserve fails closed
            log.exception("evaluator failed while deciding the log reserve")
            return False

    def _count_refusal(self, key: SummaryKey) -> None:
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

    # -- login and sessions -------------------------------------------------

    async def authenticate(self, channel: Channel, source: str, name: str, credential: Credential) -> bool:
        """Check a credential, counting failures and locking accounts.

        A locked account, an unknown name and a wrong secret all return False
        after the same work, so the answer reveals nothing; the log says which.
        """
        compiled, credentials = self._compiled, self._credentials
        settings = compiled.policy.settings
        now = self._monotonic()
        locked = self.lockout.locked(name, channel, now)
        # Always do the check, so a locked account answers as slowly as any other.  A
        # password or PIN costs scrypt: it runs in the credential-check threads, where a
        # network flood queues apart from local logins; keys and certificates are a lookup.
        if counts_toward_lockout(credential):
            valid = await credential_checks().run(
                channel,
                source,
                functools.partial(check_credential, compiled.policy, credentials, name, credential),
            )
        else:
            valid = check_credential(compiled.policy, credentials, name, credential)
        if valid and not locked:
            self.lockout.success(name, channel)
            return True
        reason = "locked" if locked else "bad_credentials"
        await self.record(
            EventType.LOGIN_FAILURE,
            name,
            Outcome.DENY,
            channel=channel,
            source=source,
            detail={"reason": reason, "method": type(credential).__name__.lower()},
        )
        self.observer.login_failure(channel)
        if (
            not locked
            and counts_toward_lockout(credential)
            and self.lockout.failure(
                name, channel, now, settings.login_failure_threshold, settings.login_lockout
            )
        ):
            self.observer.account_locked(channel)
            await self.record(
                EventType.ACCOUNT_LOCKED,
                name,
                Outcome.DENY,
                channel=channel,
                source=source,
                detail={"seconds": settings.login_lockout, "failures": settings.login_failure_threshold},
            )
        return False

    async def open_session(
        self,
        principal: str,
        channel: Channel,
        source: str,
        any_of: tuple[Permission, ...],
        resource: str = "/",
    ) -> Session | Decision:
        """Open a session if ``principal`` holds one of ``any_of`` on ``channel`` at or below ``resource``.

        A principal whose grants are scoped below ``resource`` (a technician
        limited to one feeder) may still log in; what each later request may
        touch is decided request by request.

        Returns:
            The session, or the refusing decision (recorded as a login failure).
        """
        compiled = self._compiled
        places = [resource, *sorted(_scopes_below(compiled, principal, resource))]
        refusal: Decision | None = None
        for permission, place in ((p, r) for p in any_of for r in places):
            decision = self._decide(compiled, Request(principal, permission, place, channel, source))
            if decision.allowed:
                break
            refusal = refusal or decision
        else:
            denied = refusal or Decision(
                Request(principal, Permission.TERMINAL_ACCESS, resource, channel, source),
                Outcome.DENY,
                DenyReason.NOT_GRANTED,
                "no permission to log in",
            )
            await self._commit(denied, None, {"login": True})
            await self.record(
                EventType.LOGIN_FAILURE,
                principal,
                Outcome.DENY,
                channel=channel,
                source=source,
                detail={"reason": "not_permitted"},
            )
            self.observer.login_failure(channel)
            return denied
        session = self.sessions.open(
            principal, _kind(compiled, principal), channel, source, self._monotonic()
        )
        if not await self.record(
            EventType.LOGIN_SUCCESS,
            principal,
            Outcome.ALLOW,
            channel=channel,
            source=source,
            detail={"session": session.id[:8]},
        ):
            self.sessions.remove(session)
            return Decision(
                Request(principal, any_of[0], resource, channel, source),
                Outcome.DENY,
                DenyReason.LOG_UNAVAILABLE,
                "security log unavailable",
            )
        self.observer.sessions(channel, self.sessions.count(channel))
        return session

    async def close_session(self, session: Session, *, timed_out: bool = False, reason: str = "") -> None:
        """End a session (logout, idle timeout, disconnect) and record it once."""
        if not self.sessions.remove(session):
            return
        session.closed = True
        event = EventType.LOGOUT_TIMEOUT if timed_out else EventType.LOGOUT_MANUAL
        detail: dict[str, DetailValue] = {"session": session.id[:8]}
        if reason:
            detail["reason"] = reason
        await self.record(
            event,
            session.principal,
            Outcome.ALLOW,
            channel=session.channel,
            source=session.source,
            detail=detail,
        )
        self.observer.sessions(session.channel, self.sessions.count(session.channel))
        for callback in list(session.on_close):
            try:
                callback("idle timeout" if timed_out else reason or "logged out")
            except Exception:  # a channel's hang-up must not break the guard
                log.exception("session close callback failed")

    # -- deciding -----------------------------------------------------------

    def _decide(self, compiled: CompiledPolicy, request: Request) -> Decision:
        try:
            return compiled.decide(request)
        except Exception as e:  # fail closed on anything unexpected
            log.exception("evaluator failed")
            return Decision(request, Outcome.ERROR, DenyReason.EVALUATOR_ERROR, f"evaluator error: {e}")

    async def authorize(
        self,
        session: Session,
        permission: Permission,
        resource: str = "/",
        *,
        event: EventType | None = None,
        detail: Detail | None = None,
        action: str = "",
        on_pending: PendingCallback | None = None,
        aggregate: bool = False,
    ) -> Decision:
        """Decide whether ``session`` may use ``permission`` on ``resource`` now.

        Args:
            session: The requester's session.
            permission: What the action needs.
            resource: Where it acts.
            event: How an allow is recorded (default by permission).
            detail: Small, secret-free facts for the record (e.g. the setting changed).
            action: A short description shown to a dual-control approver.
            on_pending: Called with the pending approval before a dual-control wait.
            aggregate: Count allows instead of recording each (measurement polling);
                refusals are always recorded.

        Returns:
            The decision; the action may run only if it is an allow.
        """
        request = Request(session.principal, permission, resource, session.channel, session.source)
        decision = await self._session_decision(session, request)
        reservation: Reservation | None = None
        if decision.allowed and permission is Permission.PEAK_DEMAND_RESET:
            decision, reservation = self._reserve_demand_reset(decision)
        allowed = False
        try:
            if decision.allowed and permission in self._compiled.policy.constraints.dual_control:
                decision, detail = await self._await_approval(session, decision, action, detail, on_pending)
            if aggregate and decision.allowed and not self.seclog.failed:
                decision = self._count(decision)
            else:
                decision = await self._commit(decision, event, detail)
            allowed = decision.allowed
        finally:
            # A reset that will not happen (refused, abandoned, not recordable) spends no lockout period.
            if reservation is not None:
                if allowed:
                    self._reserved_reset = (request, reservation)
                else:
                    self.demand_window.release(reservation)
        return decision

    async def action_failed(
        self, session: Session, allowed: Decision, event: EventType, detail: Detail
    ) -> None:
        """Record that an allowed action failed in the meter, and release what its allow reserved.

        The allow is already on record; this record (outcome ``error``) shows
        that nothing changed, and a stateful rule the allow counted (the
        demand-reset lockout period) is given back.
        """
        request = allowed.request
        reserved = self._reserved_reset
        if reserved is not None and reserved[0] == request:
            self._reserved_reset = None
            self.demand_window.release(reserved[1])
        await self.record(
            event,
            session.principal,
            Outcome.ERROR,
            channel=session.channel,
            source=session.source,
            permission=request.permission,
            resource=request.resource,
            detail=detail,
        )

    async def _session_decision(self, session: Session, request: Request) -> Decision:
        """The step every decision on a session shares: session checks, then the policy.

        A closed or idle session is refused (an idle one is closed as timed
        out); otherwise the compiled policy decides, narrowed to the session's
        roles when it has a role limit.  Nothing is recorded here.
        """
        if session.closed:
            return Decision(request, Outcome.DENY, DenyReason.SESSION_CLOSED, "session has ended")
        now = self._monotonic()
        if now - session.last_active > self._compiled.policy.settings.session_idle_timeout:
            await self.close_session(session, timed_out=True)
            return Decision(request, Outcome.DENY, DenyReason.SESSION_CLOSED, "session timed out")
        session.last_active = now
        decision = self._decide(self._compiled, request)
        if decision.allowed and session.role_limit is not None:
            decision = self._within_role_limit(session, decision)
        return decision

    def _count(self, decision: Decision) -> Decision:
        """Count an allow for :meth:`sweep` instead of recording it now."""
        request = decision.request
        self._aggregates[
            _Aggregate(request.principal, request.channel, request.permission, request.resource)
        ] += 1
        self.observer.decision(request.channel, request.permission, decision.outcome)
        return decision

    def _within_role_limit(self, session: Session, decision: Decision) -> Decision:
        """Narrow an allow to the roles the session may act through (never widens it).

        The evaluator has already checked scope and channel cap for the
        principal; this only removes permissions that none of the session's
        roles, among those the principal currently holds, grants.
        """
        policy = self._compiled.policy
        held = {grant.role for grant in grants_of(policy, session.principal)}
        limit = session.role_limit or ()
        usable = [r for r in limit if r in held]
        permission = decision.request.permission
        if any(permission in policy.roles[r].permissions for r in usable):
            return decision
        if not limit:
            detail = "the session holds the NULL role, which is granted nothing"
        elif not usable:
            detail = f"role {limit[0]!r} of this session is not a role of {session.principal}"
        else:
            detail = f"role {', '.join(usable)} of this session does not grant {permission.value}"
        return Decision(decision.request, Outcome.DENY, DenyReason.ROLE_LIMIT, detail)

    def _reserve_demand_reset(self, decision: Decision) -> tuple[Decision, Reservation | None]:
        """Refuse a reset inside the lockout period, or reserve it (before any await)."""
        now = self._wall()
        why = self.demand_window.check(now, self._compiled.policy.settings.demand_reset_lockout)
        if why:
            return Decision(decision.request, Outcome.DENY, DenyReason.LOCKOUT_PERIOD, why), None
        return decision, self.demand_window.reserve(now)

    async def _await_approval(
        self,
        session: Session,
        decision: Decision,
        action: str,
        detail: Detail | None,
        on_pending: PendingCallback | None,
    ) -> tuple[Decision, Detail | None]:
        request = decision.request
        pending = self.dual_control.open(
            session.principal, request.permission, request.resource, action or request.permission.value
        )
        merged: dict[str, DetailValue] = dict(detail or {})
        merged["dual_control"] = pending.id
        await self.record(
            EventType.ACCESS_DECISION,
            session.principal,
            Outcome.ALLOW,
            channel=session.channel,
            source=session.source,
            permission=request.permission,
            resource=request.resource,
            detail={"dual_control": pending.id, "state": "awaiting_approval"},
        )
        if on_pending is not None:
            on_pending(pending)
        timeout = self._compiled.policy.settings.dual_control_timeout
        try:
            approved, approver = await asyncio.wait_for(asyncio.shield(pending.result), timeout)
        except TimeoutError:
            approved, approver = False, ""
        except asyncio.CancelledError:
            # The requester went away (disconnect, shutdown): the request still gets its final record.
            abandoned = Decision(
                request, Outcome.DENY, DenyReason.DUAL_CONTROL, "dual control: request abandoned"
            )
            await asyncio.shield(self._commit(abandoned, None, merged))
            raise
        finally:
            self.dual_control.close(pending)
        if approved:
            merged["approved_by"] = approver
            return decision, merged
        reason = f"rejected by {approver}" if approver else f"not approved within {timeout} s"
        return Decision(request, Outcome.DENY, DenyReason.DUAL_CONTROL, f"dual control: {reason}"), merged

    async def approve(self, session: Session, approval_id: int, *, approve: bool = True) -> Decision:
        """Approve (or reject) a pending dual-control request as a second person.

        The approver must be a different principal and must hold the same
        permission for the same resource on their own channel.
        """
        pending = self.dual_control.get(approval_id)
        permission = pending.permission if pending else Permission.USER_MANAGEMENT
        resource = pending.resource if pending else "/"
        request = Request(session.principal, permission, resource, session.channel, session.source)
        detail: dict[str, DetailValue] = {"approves": approval_id, "approve": approve}
        if pending is None or pending.result.done():
            # Nothing was asked of the policy: a mistyped number is no permission denial to record.
            why = f"no pending request {approval_id}"
            return Decision(request, Outcome.DENY, DenyReason.BAD_REQUEST, why)
        if pending.requester == session.principal:
            decision = Decision(
                request, Outcome.DENY, DenyReason.DUAL_CONTROL, "the second person must be someone else"
            )
            return await self._commit(decision, None, detail)
        decision = await self._approver_decision(session, permission, resource, detail)
        if decision.allowed and not pending.result.done():
            pending.result.set_result((approve, session.principal))
        return decision

    # -- housekeeping ---------------------------------------------------------

    def unlock(self, user: str) -> bool:
        """Clear a user's login lockout on every channel (after an allowed ``user unlock``)."""
        return self.lockout.unlock(user)

    async def sweep(self, *, final: bool = False) -> None:
        """Close idle sessions, record the aggregated allows and the summaries of counted refusals.

        Call every few seconds, and with ``final`` at shutdown (summaries are
        otherwise written once per ``unauthenticated_interval``).  What the log
        cannot take now is kept for the next sweep.  A sweep runs to its end even
        if its caller is cancelled (counts taken out for writing are never
        dropped half-way), and the next one waits for it.
        """
        running = self._sweep_task
        if running is not None and not running.done():
            await asyncio.shield(running)
        task = asyncio.ensure_future(self._sweep(final=final))
        self._sweep_task = task
        await asyncio.shield(task)

    async def _sweep(self, *, final: bool) -> None:
        now = self._monotonic()
        idle = self._compiled.policy.settings.session_idle_timeout
        for session in self.sessions:
            if now - session.last_active > idle:
                await self.close_session(session, timed_out=True)
        aggregates, self._aggregates = self._aggregates, Counter()
        for key, count in sorted(aggregates.items(), key=lambda kv: (kv[0].principal, kv[0].resource)):
            if not await self.record(
                EventType.ACCESS_DECISION,
                key.principal,
                Outcome.ALLOW,
                channel=key.channel,
                permission=key.permission,
                resource=key.resource,
                detail={"aggregated": count},
            ):
                self._aggregates[key] += count  # kept for the next sweep: counts are never lost
        await self._write_summaries(final=final)

    # -- the security log's state ---------------------------------------------

    @property
    def refusals_to_summarise(self) -> int:
        """Refusals of unauthenticated parties counted and not yet written: the log had no room yet."""
        return self._evidence.pending

    def log_status(self) -> LogStatus:
        """The security log's fill state, for ``show status`` (read-only, nothing recorded)."""
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

    async def acknowledge_log(self, session: Session, allowed: Decision, up_to: int) -> int:
        """Mark the records up to ``up_to`` as taken off the meter by an auditor.

        The acknowledgement is recorded, durably, before the mark moves: no
        record may become droppable without the log saying who released it.

        Args:
            session: The auditor's session.
            allowed: The guard's allow of ``security_logs_access`` for this command.
            up_to: The last seq the auditor holds a copy of.

        Returns:
            The acknowledged mark now in force.

        Raises:
            ValueError: ``allowed`` is no such allow, or ``up_to`` is not in the log.
            LogUnavailableError: The acknowledgement could not be recorded (nothing changed).
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

    # -- channel helpers ------------------------------------------------------
    # Added for the shell and SFTP: a side-effect-free question ("what would the
    # policy grant?") for listings, and an any-of check that records one decision.

    def permitted(self, session: Session, resource: str | None = None) -> frozenset[Permission]:
        """Return what the policy in force grants ``session`` on its channel.

        Side-effect free: nothing is recorded and no stateful rule (lockout
        period, dual control, idle timeout) is applied, so the answer is only
        fit for listings (``help``, ``whoami``), never to permit an action.

        Args:
            session: Whose permissions.
            resource: Where; ``None`` for anywhere in the scope tree.
        """
        compiled = self._compiled
        paths = compiled.policy.scopes.paths if resource is None else (resource,)
        granted: set[Permission] = set()
        try:
            for permission in Permission:
                if any(self._would_allow(compiled, session, permission, path) for path in paths):
                    granted.add(permission)
        except Exception:  # a listing fails closed: show nothing rather than too much
            log.exception("evaluator failed while listing permissions")
            return frozenset()
        return frozenset(granted)

    def _would_allow(
        self, compiled: CompiledPolicy, session: Session, permission: Permission, resource: str
    ) -> bool:
        """The policy's answer for ``session``, narrowed by its role limit, with no side effect."""
        if not compiled.verdict(session.principal, permission, resource, session.channel).allowed:
            return False
        if session.role_limit is None:
            return True
        request = Request(session.principal, permission, resource, session.channel, session.source)
        return self._within_role_limit(session, Decision(request, Outcome.ALLOW)).allowed

    def approvable(self, session: Session) -> list[PendingApproval]:
        """The dual-control requests ``session`` could approve now (someone else's, its permission held).

        Side-effect free, for listings; :meth:`approve` decides for real.
        """
        compiled = self._compiled
        try:
            return [
                pending
                for pending in self.dual_control.pending()
                if pending.requester != session.principal
                and not pending.result.done()
                and self._would_allow(compiled, session, pending.permission, pending.resource)
            ]
        except Exception:  # a listing fails closed
            log.exception("evaluator failed while listing approvals")
            return []

    async def reauthorize(self, session: Session, allowed: Decision) -> Decision:
        """Decide again, for the next step of an action allowed earlier (a transfer's next block).

        The same request is decided by the policy in force now, so a revoked
        permission stops the action at its next step; the session must still be
        open and not idle.  Dual control and the demand-reset lockout period
        are not applied again: they gated the action's start.  Allows are
        aggregated (see :meth:`sweep`); refusals are recorded.
        """
        request = allowed.request
        if not allowed.allowed or request.principal != session.principal:
            decision = Decision(request, Outcome.DENY, DenyReason.SESSION_CLOSED, "session has ended")
        else:
            decision = await self._session_decision(session, request)
        if decision.allowed and not self.seclog.failed:
            return self._count(decision)
        return await self._commit(decision, EventType.ACCESS_DECISION, None)

    def key_acceptable(self, channel: Channel, name: str, key: PublicKey) -> bool:
        """Return True if ``key`` is listed for ``name`` and the account is not locked on ``channel``.

        Side-effect free, for the SSH public-key *query* (before the client
        proves it holds the private key): a public key is public, so offering
        one must neither reset nor add to the failure count.  A refused key
        goes to :meth:`authenticate`, which records the failure.
        """
        if self.lockout.locked(name, channel, self._monotonic()):
            return False
        return check_credential(self._compiled.policy, self._credentials, name, key)

    async def authorize_any(
        self,
        session: Session,
        permissions: tuple[Permission, ...],
        resource: str = "/",
        *,
        event: EventType | None = None,
        detail: Detail | None = None,
        aggregate: bool = False,
    ) -> Decision:
        """Like :meth:`authorize` for an action any one of ``permissions`` permits.

        The first permission the policy grants is authorized (and recorded);
        if none is granted, the refusal of the first one is recorded.
        """
        compiled = self._compiled
        chosen = permissions[0]
        try:
            for permission in permissions:
                if self._would_allow(compiled, session, permission, resource):
                    chosen = permission
                    break
        except Exception:  # authorize below decides again and fails closed
            log.exception("evaluator failed while choosing a permission")
        return await self.authorize(
            session, chosen, resource, event=event, detail=detail, aggregate=aggregate
        )

    # -- unauthenticated channels -----------------------------------------------

    def anonymous_session(self, channel: Channel, source: str) -> Session:
        """Return a session for the anonymous principal of an unauthenticated connection.

        Nothing is recorded and the session is not registered: an
        unauthenticated channel (plain Modbus TCP) has no login, and a client
        that reconnects in a loop must not write a login and a logout record
        per connection.  Every request on the session is still decided by
        :meth:`authorize` (refusals recorded, allows recorded or aggregated),
        so what anonymous may do is exactly what the policy's ``[anonymous]``
        section grants.  :meth:`close_session` ignores such a session; the
        channel simply drops it.
        """
        now = self._monotonic()
        return Session(secrets.token_hex(16), ANONYMOUS, PrincipalKind.ANONYMOUS, channel, source, now, now)

    # -- dual-control approver check (added for the serial and panel channels) --

    async def _approver_decision(
        self, session: Session, permission: Permission, resource: str, detail: Detail
    ) -> Decision:
        """Decide whether ``session`` may approve a use of ``permission`` on ``resource``.

        Like :meth:`authorize` (closed and idle sessions are refused, the
        decision is recorded as ``access_decision``) but without the stateful
        rules of the *use* itself: approving a dual-control permission must
        not open a second dual-control wait, and approving must not spend the
        demand-reset lockout period.
        """
        request = Request(session.principal, permission, resource, session.channel, session.source)
        decision = await self._session_decision(session, request)
        return await self._commit(decision, EventType.ACCESS_DECISION, detail)
