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
import functools
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Literal

from meterd.guard.audit import (
    ALLOW_EVENTS,
    Audit,
    Detail,
    DetailValue,
    EventType,
    LogStatus,
    Query,
    Record,
    SecurityLog,
    VerifyReport,
    allow_event,
    principal_kind,
)
from meterd.guard.credential_checks import credential_checks
from meterd.guard.credentials import (
    Credential,
    Password,
    PublicKey,
    check_credential,
    counts_toward_lockout,
)
from meterd.guard.decide import decide, evaluate, replaced, within_role_limit
from meterd.guard.demand_window import DemandResetWindow, Reservation
from meterd.guard.directory_login import DirectoryGate, break_glass_allowed, directory_login, login_path
from meterd.guard.dual_control import DualControl, PendingApproval
from meterd.guard.lockout import LoginLockout
from meterd.guard.observer import GuardObserver, NullObserver
from meterd.guard.sessions import Session, SessionRegistry
from meterd.policy.compile import CompiledPolicy, compile_policy
from meterd.policy.credentials import Credentials, initial_credentials
from meterd.policy.directory import is_local, with_directory
from meterd.policy.grants import PrincipalKind, grants_of
from meterd.policy.model import ANONYMOUS, DirectoryPrincipal, Policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, DenyReason, Outcome, Request
from meterd.policy.scope import contains

log = logging.getLogger(__name__)

PendingCallback = Callable[[PendingApproval], None]
#: What a refusal made before any decision is recorded as: a refused request
#: (``permission_denied``), a refused login (``login_failure``) or a request
#: refused for its shape (``access_decision``, as every Modbus write is recorded).
RefusalKind = Literal["request", "login", "access"]
_REFUSAL_EVENTS: dict[RefusalKind, EventType] = {
    "request": EventType.PERMISSION_DENIED,
    "login": EventType.LOGIN_FAILURE,
    "access": EventType.ACCESS_DECISION,
}

__all__ = ["ALLOW_EVENTS", "Guard", "LogStatus"]


def _scopes_below(compiled: CompiledPolicy, principal: str, resource: str) -> set[str]:
    """The principal's grant scopes that lie strictly below ``resource``."""
    return {
        scope
        for grant in grants_of(compiled.policy, principal)
        for scope in grant.scopes
        if scope != resource and contains(resource, scope)
    }


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
        directory: Directory login (LDAP or RADIUS), or None for local logins only.
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
        directory: DirectoryGate | None = None,
    ) -> None:
        # _base is the policy as installed; _compiled adds the directory users in force
        # (see meterd.guard.directory_login) and is what every decision uses.
        self._base = compiled
        self._compiled = compiled
        self.directory = directory
        self._credentials = credentials if credentials is not None else initial_credentials(compiled.policy)
        #: The policy-store version in force (follows push, rollback, shell edits and reload).
        self.policy_version = policy_version or 0
        self.observer: GuardObserver = observer or NullObserver()
        self._audit = Audit(seclog, self.observer, monotonic=monotonic, wall=wall)
        self._monotonic = monotonic
        self._wall = wall
        self.sessions = SessionRegistry()
        self.lockout = LoginLockout()
        self.dual_control = DualControl()
        self.demand_window = DemandResetWindow(last_demand_reset)
        # The reset allowed last and not yet known to have happened: released if its action fails.
        self._reserved_reset: tuple[Request, Reservation] | None = None
        self._sweep_task: asyncio.Future[None] | None = None
        if policy_version is not None:
            self.observer.policy_in_force(policy_version, compiled.policy.version)

    # -- policy -----------------------------------------------------------

    @property
    def compiled(self) -> CompiledPolicy:
        """The policy in force, as installed (without the directory users logged in now)."""
        return self._base

    def install_policy(self, compiled: CompiledPolicy, version: int | None = None) -> CompiledPolicy:
        """Put ``compiled`` in force in one step; return the policy it replaced.

        Args:
            compiled: The new policy.
            version: Its policy-store version (None: a policy that was not stored, in tests).
        """
        previous, self._base = self._base, compiled
        self._compiled = self._with_directory(compiled)
        if version is not None:
            self.policy_version = version
        self.observer.policy_in_force(self.policy_version, compiled.policy.version)
        return previous

    def _with_directory(self, base: CompiledPolicy) -> CompiledPolicy:
        """``base`` with the directory users in force added to its table (``base`` itself if none)."""
        principals = self.directory.principals if self.directory is not None else {}
        policy = with_directory(base.policy, principals)
        return base if policy is base.policy else compile_policy(policy)

    def put_directory_principal(self, principal: DirectoryPrincipal, server: str) -> None:
        """Put a directory user the policy mapped in force (a directory login succeeded)."""
        if self.directory is None:
            raise ValueError("no directory configured")
        self.directory.put(principal, server, self._monotonic())
        self._compiled = self._with_directory(self._base)

    def now(self) -> float:
        """The guard's monotonic clock."""
        return self._monotonic()

    @property
    def credentials(self) -> Credentials:
        """The local credentials in force."""
        return self._credentials

    def install_credentials(self, credentials: Credentials) -> None:
        """Put a new credentials snapshot in force in one step (checks under way keep the old one)."""
        self._credentials = credentials

    # -- recording --------------------------------------------------------

    @property
    def seclog(self) -> SecurityLog:
        """The security log (for the daemon's wiring; channels go through the guard's verbs)."""
        return self._audit.seclog

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
        """Append a record that is not a decision (see :meth:`Audit.record`).

        Returns:
            False if the log could not take it (the caller must then fail closed).
        """
        return await self._audit.record(
            self._compiled,
            event,
            principal,
            outcome,
            channel=channel,
            source=source,
            permission=permission,
            resource=resource,
            detail=detail,
            budgeted=budgeted,
        )

    async def _commit(self, decision: Decision, event: EventType | None, detail: Detail | None) -> Decision:
        """Record a decision; an allow whose record is not durable becomes a denial."""
        return await self._audit.commit(self._compiled, decision, event, detail)

    # -- login and sessions -------------------------------------------------

    async def authenticate(self, channel: Channel, source: str, name: str, credential: Credential) -> bool:
        """Check a credential, counting failures and locking accounts.

        A locked account, an unknown name and a wrong secret all return False
        after the same work, so the answer reveals nothing; the log says which.
        """
        compiled, credentials = self._compiled, self._credentials
        settings = compiled.policy.settings
        gate = self.directory
        if (
            gate is not None
            and isinstance(credential, Password)
            and gate.applies(channel)
            and not is_local(self._base.policy, name)
        ):
            return await directory_login(
                self, gate, channel=channel, source=source, name=name, password=credential.secret
            )
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
            await self.locked_out(name, channel, source)
        return False

    async def locked_out(self, name: str, channel: Channel, source: str) -> None:
        """Record and count that ``name`` has just been locked on ``channel``."""
        settings = self._compiled.policy.settings
        self.observer.account_locked(channel)
        await self.record(
            EventType.ACCOUNT_LOCKED,
            name,
            Outcome.DENY,
            channel=channel,
            source=source,
            detail={"seconds": settings.login_lockout, "failures": settings.login_failure_threshold},
        )

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
        if self.directory is not None and not await break_glass_allowed(
            self, self.directory, channel=channel, source=source, name=principal
        ):
            return Decision(
                Request(principal, any_of[0], resource, channel, source),
                Outcome.DENY,
                DenyReason.NOT_GRANTED,
                "break-glass accounts log in only while the directory is unreachable",
            )
        compiled = self._compiled
        places = [resource, *sorted(_scopes_below(compiled, principal, resource))]
        refusal: Decision | None = None
        for permission, place in ((p, r) for p in any_of for r in places):
            decision = evaluate(compiled, Request(principal, permission, place, channel, source))
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
            principal, principal_kind(compiled, principal), channel, source, self._monotonic()
        )
        detail: dict[str, DetailValue] = {"session": session.id[:8]}
        if self.directory is not None:
            detail.update(login_path(self, self.directory, session))
        if not await self.record(
            EventType.LOGIN_SUCCESS, principal, Outcome.ALLOW, channel=channel, source=source, detail=detail
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
            if decision.allowed and self.dual_control.check(
                permission, self._compiled.policy.constraints.dual_control
            ):
                decision, detail = await self._await_approval(session, decision, action, detail, on_pending)
            if aggregate and decision.allowed and not self._audit.failed:
                decision = self._audit.count(decision)
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
        now = self._monotonic()
        decision = decide(self._compiled, session, request, now)
        if session.closed:
            return decision
        if decision.reason is DenyReason.SESSION_CLOSED:  # found idle: it ends now
            await self.close_session(session, timed_out=True)
            return decision
        session.last_active = now
        return decision

    def _reserve_demand_reset(self, decision: Decision) -> tuple[Decision, Reservation | None]:
        """Refuse a reset inside the lockout period, or reserve it (before any await)."""
        now = self._wall()
        why = self.demand_window.check(now, self._compiled.policy.settings.demand_reset_lockout)
        if why:
            return Decision(decision.request, Outcome.DENY, DenyReason.LOCKOUT_PERIOD, why), None
        return decision, self.demand_window.commit(now)

    async def _await_approval(
        self,
        session: Session,
        decision: Decision,
        action: str,
        detail: Detail | None,
        on_pending: PendingCallback | None,
    ) -> tuple[Decision, Detail | None]:
        request = decision.request
        pending = self.dual_control.commit(
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
            self.dual_control.release(pending)
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
            elif session.expires_at is not None and now >= session.expires_at:
                await self.close_session(session, timed_out=True, reason="session lifetime reached")
        if self.directory is not None and self.directory.prune({s.principal for s in self.sessions}, now):
            self._compiled = self._with_directory(self._base)
        await self._audit.flush(self._compiled, final=final)

    # -- the security log's state ---------------------------------------------

    @property
    def refusals_to_summarise(self) -> int:
        """Refusals of unauthenticated parties counted and not yet written: the log had no room yet."""
        return self._audit.refusals_to_summarise

    def log_status(self) -> LogStatus:
        """The security log's fill state, for ``show status`` (read-only, nothing recorded)."""
        return self._audit.status()

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
        return await self._audit.acknowledge(self._compiled, session, allowed, up_to)

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
        if replaced(compiled.policy, session):
            return False
        if not compiled.verdict(session.principal, permission, resource, session.channel).allowed:
            return False
        if session.role_limit is None:
            return True
        request = Request(session.principal, permission, resource, session.channel, session.source)
        return within_role_limit(compiled.policy, session, Decision(request, Outcome.ALLOW)).allowed

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
        if decision.allowed and not self._audit.failed:
            return self._audit.count(decision)
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

    # -- the façade's other verbs: what channels and the shell use besides deciding --

    @property
    def policy(self) -> Policy:
        """The policy in force, with the directory users logged in now (change it: :meth:`install_policy`)."""
        return self._compiled.policy

    async def refuse(
        self,
        principal: str,
        channel: Channel,
        source: str,
        detail: Detail,
        *,
        kind: RefusalKind = "request",
        permission: Permission | None = None,
        resource: str = "",
        budgeted: bool = False,
    ) -> bool:
        """Record a refusal made before any decision (a path escape, a malformed frame, a probe).

        Args:
            principal: Who asked (``anonymous`` or ``""`` for nobody yet).
            channel: Where.
            source: Peer address.
            detail: Why, small and secret-free (``reason`` or ``refused`` names
                the summary a budgeted refusal is counted under).
            kind: What the refusal is recorded as (see :data:`RefusalKind`).
            permission: The permission the request would have needed, if known.
            resource: Where it would have acted.
            budgeted: Count it against the unauthenticated budget even if the
                principal is known (a probe on a connection with no session).

        Returns:
            False if the log could not take it.
        """
        return await self.record(
            _REFUSAL_EVENTS[kind],
            principal,
            Outcome.DENY,
            channel=channel,
            source=source,
            permission=permission,
            resource=resource,
            detail=detail,
            budgeted=budgeted,
        )

    async def failed(
        self, session: Session, allowed: Decision, detail: Detail, *, event: EventType | None = None
    ) -> None:
        """Complete an allowed action that failed in the meter (see :meth:`action_failed`).

        ``event`` defaults to the event the allow was recorded as for its permission.
        """
        await self.action_failed(session, allowed, event or allow_event(allowed.request.permission), detail)

    async def policy_changed(
        self, session: Session, outcome: Outcome, detail: Detail, *, principal: str | None = None
    ) -> bool:
        """Record a change of the policy in force (or its refusal), made from ``session``."""
        return await self.record(
            EventType.POLICY_CHANGE,
            principal or session.principal,
            outcome,
            channel=session.channel,
            source=session.source,
            detail=detail,
        )

    async def credentials_changed(self, session: Session, detail: Detail) -> bool:
        """Record a change of local credentials (a password, PIN or key) made from ``session``."""
        return await self.record(
            EventType.PASSWORD_CHANGE,
            session.principal,
            Outcome.ALLOW,
            channel=session.channel,
            source=session.source,
            detail=detail,
        )

    def sessions_of(self, principal: str) -> Iterator[Session]:
        """The open sessions of ``principal`` (a snapshot: closing one while iterating is safe)."""
        return (session for session in self.sessions if session.principal == principal)

    def login_failed(self, channel: Channel) -> None:
        """Count a login that failed before the guard was asked (a TLS handshake) in the metrics."""
        self.observer.login_failure(channel)

    def modbus_answered(self, function_code: int, outcome: Outcome) -> None:
        """Count a Modbus request by function and outcome in the metrics."""
        self.observer.modbus_request(function_code, outcome)

    async def read_log(self, allowed: Decision, query: Query) -> list[Record]:
        """The log records ``query`` selects (the access itself is recorded before any is returned)."""
        return await self._audit.read(allowed, query)

    async def read_log_frames(self, allowed: Decision) -> bytes:
        """The log's stored lines byte for byte (the access itself is recorded before they are returned)."""
        return await self._audit.read_frames(allowed)

    async def checkpoint_log(self) -> int:
        """Seal a checkpoint of the log's head now; return its seq."""
        return await self._audit.checkpoint()

    async def verify_log(self) -> VerifyReport:
        """Check the chain of the whole log."""
        return await self._audit.verify()
