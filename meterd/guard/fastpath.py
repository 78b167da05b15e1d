"""Aggregated allows answered again without the full decision, while nothing they rest on changed.

An aggregated allow (a Modbus read, an SFTP transfer's next block) is the most
frequent decision, and once made its answer depends only on the compiled
policy in force, on the session (open, not idle for longer than the policy
allows, the roles it may act through) and on the security log still taking
records.  The guard remembers, per session, the aggregated allows it gave; the
same permission on the same resource in the same session is answered from
that memory while all of those stand, with exactly the effects of the full
path: the session is marked active and the allow is counted for the next
sweep's record and in the metrics.

Invariants:
    * Only aggregated allows are remembered, and only of permissions that no
      stateful rule gates (not ``peak_demand_reset``, none the policy puts under
      dual control): a refusal, a recorded allow and every rule take the full path.
    * A remembered allow is used only under the very compiled policy and role
      limit it was decided under, in a session that is open and not idle, while
      the log has not failed (the writer's flag: set when a write fails, or
      when the loop a failed sync wakes learns it); anything else takes the
      full path, which decides and remembers anew.  Installing a policy or setting a role limit thus
      needs no invalidation: the identity check fails.
    * A session remembers at most :data:`MAX_REMEMBERED` allows (the oldest is
      forgotten first), so a client cannot grow it without bound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from meterd.guard.audit import AggregateKey, Audit, aggregate_key
from meterd.guard.observer import Tally
from meterd.guard.permit import Permit
from meterd.policy.compile import CompiledPolicy
from meterd.policy.permissions import Permission
from meterd.policy.request import Request
from meterd.record import record

if TYPE_CHECKING:
    from meterd.guard.sessions import Session

#: Most aggregated allows one session remembers.
MAX_REMEMBERED = 64


@record
class Remembered:
    """One aggregated allow a session may be given again.

    Attributes:
        compiled: The policy it was decided under.
        role_limit: The session's role limit it was decided under.
        decision: The allow's permit (returned again, so its request is the same object).
        idle: The policy's session idle timeout.
        key: What the allow is counted under.
        tally: Its count in the metrics.
    """

    compiled: CompiledPolicy
    role_limit: tuple[str, ...] | None
    decision: Permit
    idle: float
    key: AggregateKey
    tally: Tally


class AllowMemory:
    """The guard's memory of aggregated allows, kept in each session.

    Args:
        audit: Counts the allows.
        monotonic: The guard's clock.
    """

    __slots__ = ("_audit", "_health", "_monotonic")

    def __init__(self, audit: Audit, monotonic: Callable[[], float]) -> None:
        self._audit = audit
        self._health = audit.seclog.health
        self._monotonic = monotonic

    def again(
        self,
        compiled: CompiledPolicy,
        session: Session,
        request_key: tuple[Permission, str],
        request: Request | None = None,
    ) -> Permit | None:
        """Count and return the remembered allow for ``request_key`` if it still stands, else None.

        Args:
            compiled: The policy in force.
            session: The requester's session.
            request_key: ``(permission, resource)``.
            request: If given, the remembered allow must be of this very request.
        """
        entry = session.allows.get(request_key)
        if (
            entry is None
            or (request is not None and entry.decision.request is not request)
            or entry.compiled is not compiled
            or entry.role_limit is not session.role_limit
            or session.closed
        ):
            return None
        now = self._monotonic()
        if now - session.last_active > entry.idle or self._health.failed:
            return None
        session.last_active = now
        # Audit.count, inlined (this runs once per Modbus read or transfer block).
        self._audit._aggregates[entry.key] += 1  # not kept here: each sweep starts a new one
        entry.tally.pending += 1
        return entry.decision

    def remember(self, compiled: CompiledPolicy, session: Session, decision: Permit) -> None:
        """Remember an aggregated allow just counted, unless a stateful rule gates its permission.

        An allow of a request that is not the session's own (another source or
        channel) is not remembered: what is given again must be what the full
        path would have returned.
        """
        request: Request = decision.request
        permission = request.permission
        policy = compiled.policy
        if (
            permission is Permission.PEAK_DEMAND_RESET
            or permission in policy.constraints.dual_control
            or request.principal != session.principal
            or request.channel is not session.channel
            or request.source != session.source
        ):
            return
        allows = session.allows
        if len(allows) >= MAX_REMEMBERED:
            del allows[next(iter(allows))]
        allows[(permission, request.resource)] = Remembered(
            compiled,
            session.role_limit,
            decision,
            policy.settings.session_idle_timeout,
            aggregate_key(request),
            self._audit.observer.decision_tally(request.channel, permission, decision.outcome),
        )
