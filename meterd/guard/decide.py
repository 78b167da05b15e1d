"""The pure decision step: (policy, session snapshot, request, now) → decision.

Nothing here reads a clock, writes a record, or changes a session: the guard
passes the time in, records what comes out, and applies what a decision
implies (closing a session found idle, marking it active).  The only side
effect is a diagnostic line when the evaluator fails.

Invariants:
    * A closed session is refused (``session_closed``, "session has ended").
    * A session idle for longer than the policy's ``session_idle_timeout`` is
      refused (``session_closed``, "session timed out"); the caller closes it.
    * Otherwise the compiled policy decides; an exception while it does is a
      refusal with ``Outcome.ERROR`` (fail closed).
    * A role limit only narrows an allow, never widens a refusal.
    * A session acts only as the principal that logged in: a directory user's
      session is refused once its name is no directory user in force (a local
      user of that name was added), and a local session once its name is a
      directory user's (``session has ended``).
"""

from __future__ import annotations

import logging
from typing import Protocol

from meterd.policy.compile import CompiledPolicy
from meterd.policy.grants import grants_of
from meterd.policy.model import Policy
from meterd.policy.request import Decision, DenyReason, Outcome, Request

log = logging.getLogger(__name__)

ENDED = "session has ended"
REPLACED = "session has ended: its user name now belongs to another principal"
TIMED_OUT = "session timed out"


class SessionState(Protocol):
    """What a decision reads of a session (a :class:`~meterd.guard.sessions.Session` is one)."""

    @property
    def principal(self) -> str:
        """Who acts."""

    @property
    def closed(self) -> bool:
        """The session has ended."""

    @property
    def last_active(self) -> float:
        """Monotonic time of the last request."""

    @property
    def role_limit(self) -> tuple[str, ...] | None:
        """The roles the session may act through (None: all of the principal's)."""

    @property
    def directory(self) -> bool:
        """The session's principal logged in through a directory."""


def evaluate(compiled: CompiledPolicy, request: Request) -> Decision:
    """The compiled policy's decision, with any evaluator failure turned into a refusal."""
    try:
        return compiled.decide(request)
    except Exception as e:  # fail closed on anything unexpected
        log.exception("evaluator failed")
        return Decision(request, Outcome.ERROR, DenyReason.EVALUATOR_ERROR, f"evaluator error: {e}")


def within_role_limit(policy: Policy, session: SessionState, decision: Decision) -> Decision:
    """Narrow an allow to the roles the session may act through (never widens it).

    The evaluator has already checked scope and channel cap for the
    principal; this only removes permissions that none of the session's
    roles, among those the principal currently holds, grants.
    """
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


def replaced(policy: Policy, session: SessionState) -> bool:
    """Whether the session's name now denotes another principal than the one that logged in."""
    return session.directory != (session.principal in policy.directory_principals)


def timed_out(compiled: CompiledPolicy, session: SessionState, now: float) -> bool:
    """Whether an open session has been idle longer than the policy allows at ``now``."""
    return now - session.last_active > compiled.policy.settings.session_idle_timeout


def decide(compiled: CompiledPolicy, session: SessionState, request: Request, now: float) -> Decision:
    """Decide ``request`` made on ``session`` at monotonic time ``now`` under ``compiled``.

    Args:
        compiled: The policy in force.
        session: The requester's session as it stands (not changed here).
        request: What is asked.
        now: Monotonic time of the request.

    Returns:
        The decision, before the stateful rules (lockout period, dual control)
        and before it is recorded.
    """
    if session.closed:
        return Decision(request, Outcome.DENY, DenyReason.SESSION_CLOSED, ENDED)
    if replaced(compiled.policy, session):
        return Decision(request, Outcome.DENY, DenyReason.SESSION_CLOSED, REPLACED)
    if timed_out(compiled, session, now):
        return Decision(request, Outcome.DENY, DenyReason.SESSION_CLOSED, TIMED_OUT)
    decision = evaluate(compiled, request)
    if decision.allowed and session.role_limit is not None:
        decision = within_role_limit(compiled.policy, session, decision)
    return decision
