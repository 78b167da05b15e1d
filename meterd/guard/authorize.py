"""The guard's decisions on sessions: authorize (a permit), reauthorize, approve.

Every decision here goes through the session step (closed and idle sessions
refused), the pure decision (:func:`meterd.guard.decide.decide`), the stateful
rules of the use (the demand-reset window, dual control) and the audit step,
in that order.  What a rule reserved is given back if the allow is not
recorded, or if the channel reports the action failed (:class:`Permit`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from meterd.guard.audit import Detail, DetailValue, EventType, allow_event
from meterd.guard.demand_window import Reservation
from meterd.guard.dual_control import PendingApproval
from meterd.guard.login import Login
from meterd.guard.permit import Completion, Permit, RepeatedCompletion
from meterd.guard.sessions import Session
from meterd.guard.view import would_allow
from meterd.policy.permissions import Permission
from meterd.policy.request import Decision, DenyReason, Outcome, Request

log = logging.getLogger(__name__)

PendingCallback = Callable[[PendingApproval], None]


class Authorization(Login):
    """Deciding requests made on sessions, and dual-control approvals."""

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
    ) -> Permit:
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
            The permit: the action may run only if it is an allow, and the
            channel then completes it with :meth:`Permit.done` or
            :meth:`Permit.failed` (which gives back what the allow reserved).
        """
        if aggregate and (again := self._allows.again(self._compiled, session, (permission, resource))):
            return again  # the allow given last time still stands (see meterd.guard.fastpath)
        request = Request(session.principal, permission, resource, session.channel, session.source)
        decision = await self._session_decision(session, request)
        reservation: Reservation | None = None
        if decision.allowed and permission is Permission.PEAK_DEMAND_RESET:
            decision, reservation = self._reserve_demand_reset(decision)
        allowed = counted = False
        try:
            if decision.allowed and self.dual_control.check(
                permission, self._compiled.policy.constraints.dual_control
            ):
                decision, detail = await self._await_approval(session, decision, action, detail, on_pending)
            if aggregate and decision.allowed and not self._audit.failed:
                decision = self._audit.count(decision)
                counted = True
            else:
                decision = await self._commit(decision, event, detail)
            allowed = decision.allowed
        finally:
            # A reset that will not happen (refused, abandoned, not recordable) spends no lockout period.
            if reservation is not None and not allowed:
                self.demand_window.release(reservation)
        if counted and reservation is None:
            permit = self._repeatable(session, decision)
            self._allows.remember(self._compiled, session, permit)
            return permit
        release = None if reservation is None else functools.partial(self.demand_window.release, reservation)
        return Permit.of(decision, Completion(functools.partial(self._action_failed, session), release))

    async def _action_failed(
        self, session: Session, allowed: Decision, event: EventType | None, detail: Detail
    ) -> None:
        """Record that an allowed action failed in the meter (outcome ``error``: nothing changed).

        ``event`` defaults to the event the allow was recorded as for its permission.
        """
        request = allowed.request
        await self.record(
            event or allow_event(request.permission),
            session.principal,
            Outcome.ERROR,
            channel=session.channel,
            source=session.source,
            permission=request.permission,
            resource=request.resource,
            detail=detail,
        )

    async def authorize_any(
        self,
        session: Session,
        permissions: tuple[Permission, ...],
        resource: str = "/",
        *,
        event: EventType | None = None,
        detail: Detail | None = None,
        aggregate: bool = False,
    ) -> Permit:
        """Like :meth:`authorize` for an action any one of ``permissions`` permits.

        The first permission the policy grants is authorized (and recorded);
        if none is granted, the refusal of the first one is recorded.
        """
        compiled = self._compiled
        chosen = permissions[0]
        try:
            for permission in permissions:
                if would_allow(compiled, session, permission, resource):
                    chosen = permission
                    break
        except Exception:  # authorize below decides again and fails closed
            log.exception("evaluator failed while choosing a permission")
        return await self.authorize(
            session, chosen, resource, event=event, detail=detail, aggregate=aggregate
        )

    async def reauthorize(self, session: Session, allowed: Decision) -> Decision:
        """Decide again, for the next step of an action allowed earlier (a transfer's next block).

        The same request is decided by the policy in force now, so a revoked
        permission stops the action at its next step; the session must still be
        open and not idle.  Dual control and the demand-reset lockout period
        are not applied again: they gated the action's start.  Allows are
        aggregated (see :meth:`sweep`); refusals are recorded.
        """
        request = allowed.request
        again = self._allows.again(self._compiled, session, (request.permission, request.resource), request)
        if again is not None:
            return again
        if not allowed.allowed or request.principal != session.principal:
            decision = Decision(request, Outcome.DENY, DenyReason.SESSION_CLOSED, "session has ended")
        else:
            decision = await self._session_decision(session, request)
        if decision.allowed and not self._audit.failed:
            permit = self._repeatable(session, self._audit.count(decision))
            self._allows.remember(self._compiled, session, permit)
            return permit
        return await self._commit(decision, EventType.ACCESS_DECISION, None)

    def _repeatable(self, session: Session, allowed: Decision) -> Permit:
        """The permit of an aggregated allow, which the guard may give again (it reserved nothing)."""
        return Permit.of(allowed, RepeatedCompletion(functools.partial(self._action_failed, session)))

    def authorize_again(self, session: Session, permission: Permission, resource: str) -> Decision | None:
        """An aggregated allow :meth:`authorize` gave this session before, given again without awaiting.

        Returns:
            The allow (counted as :meth:`authorize` counts it), or None when the
            answer could differ now: then call :meth:`authorize`.
        """
        return self._allows.again(self._compiled, session, (permission, resource))

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
        # From its commit on, the wait is released whatever happens, a cancel while its
        # "awaiting_approval" record is written included (it would otherwise stay approvable).
        try:
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
