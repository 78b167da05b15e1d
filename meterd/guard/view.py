"""The guard's listings: what a session could do, asked without deciding anything.

Every answer here is side-effect free (nothing recorded, no stateful rule
applied) and fails closed (an evaluator error lists nothing), so it is fit
for ``help``, ``whoami`` and approval lists, never to permit an action.
"""

from __future__ import annotations

import logging

from meterd.guard.audit import LogStatus
from meterd.guard.core import GuardCore
from meterd.guard.decide import replaced, within_role_limit
from meterd.guard.dual_control import PendingApproval
from meterd.guard.sessions import Session
from meterd.policy.compile import CompiledPolicy
from meterd.policy.permissions import Permission
from meterd.policy.request import Decision, Outcome, Request

log = logging.getLogger(__name__)


def would_allow(compiled: CompiledPolicy, session: Session, permission: Permission, resource: str) -> bool:
    """The policy's answer for ``session``, narrowed by its role limit, with no side effect."""
    if replaced(compiled.policy, session):
        return False
    if not compiled.verdict(session.principal, permission, resource, session.channel).allowed:
        return False
    if session.role_limit is None:
        return True
    request = Request(session.principal, permission, resource, session.channel, session.source)
    return within_role_limit(compiled.policy, session, Decision(request, Outcome.ALLOW)).allowed


class View(GuardCore):
    """The read-only view: listings and the security log's fill state."""

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
                if any(would_allow(compiled, session, permission, path) for path in paths):
                    granted.add(permission)
        except Exception:  # a listing fails closed: show nothing rather than too much
            log.exception("evaluator failed while listing permissions")
            return frozenset()
        return frozenset(granted)

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
                and would_allow(compiled, session, pending.permission, pending.resource)
            ]
        except Exception:  # a listing fails closed
            log.exception("evaluator failed while listing approvals")
            return []

    @property
    def refusals_to_summarise(self) -> int:
        """Refusals of unauthenticated parties counted and not yet written: the log had no room yet."""
        return self._audit.refusals_to_summarise

    def log_status(self) -> LogStatus:
        """The security log's fill state, for ``show status`` (read-only, nothing recorded)."""
        return self._audit.status()
