"""The guard's records that are not decisions, and the security log's contents.

Refusals made before any decision (a path escape, a malformed frame), changes
of policy and credentials, the daemon's start and stop, and the auditor's
reading, acknowledging and checking of the log: each is one verb here, so no
caller outside the guard names an event type or writes a record itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from meterd.guard.audit import Detail, EventType, Query, Record
from meterd.guard.core import GuardCore
from meterd.guard.observer import Tally
from meterd.guard.sessions import Session
from meterd.policy.model import ANONYMOUS
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, Outcome
from meterd.record import record

if TYPE_CHECKING:
    from meterd.guard.audit import VerifyReport

#: What a refusal made before any decision is recorded as: a refused request
#: (``permission_denied``), a refused login (``login_failure``) or a request
#: refused for its shape (``access_decision``, as every Modbus write is recorded).
RefusalKind = Literal["request", "login", "access"]
_REFUSAL_EVENTS: dict[RefusalKind, EventType] = {
    "request": EventType.PERMISSION_DENIED,
    "login": EventType.LOGIN_FAILURE,
    "access": EventType.ACCESS_DECISION,
}
#: Who meterd itself is in its records (start, stop, reload).
DAEMON = "meterd"


@record
class Actor:
    """A party that made a change outside any session: meterd itself, or a push's channel.

    Attributes:
        principal: Who.
        channel: Where the change came in.
        source: Peer address (empty for local).
    """

    principal: str
    channel: Channel
    source: str = ""


#: Who made a change and from where.
Party = Session | Actor


class LogVerbs(GuardCore):
    """Records that are not decisions, and the auditor's access to the log."""

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

    async def refuse_connection(self, channel: Channel, source: str, reason: str) -> bool:
        """Count and record a connection closed as it was accepted (a channel's connection limit).

        Nobody has authenticated on it, so the record is budgeted: a flood of
        connections writes a bounded number of records and is counted into
        summaries beyond (see :mod:`meterd.guard.evidence`).

        Args:
            channel: Where.
            source: Peer address.
            reason: Which limit (the summary the refusal is counted under).

        Returns:
            False if the log could not take it.
        """
        self.observer.connection_refused(channel)
        return await self.refuse(ANONYMOUS, channel, source, {"reason": reason}, kind="login", budgeted=True)

    async def policy_changed(
        self, by: Party, outcome: Outcome, detail: Detail, *, principal: str | None = None
    ) -> bool:
        """Record a change of the policy in force (or its refusal), made by ``by``.

        Args:
            by: The session (or the party outside any) the change came from.
            outcome: ``allow`` for a change in force, ``deny`` for a refused one.
            detail: How, which version, what changed (small, secret-free).
            principal: Who to name, if not ``by``'s principal (a bundle's signer).
        """
        return await self.record(
            EventType.POLICY_CHANGE,
            principal or by.principal,
            outcome,
            channel=by.channel,
            source=by.source,
            detail=detail,
        )

    async def credentials_changed(self, by: Party, detail: Detail, *, removed: bool = False) -> bool:
        """Record a change of local credentials (a password, PIN or key) made by ``by``.

        Args:
            by: The session (or the party outside any) the change came from.
            detail: Whose credentials and how (never the secret).
            removed: The credentials were dropped (``password_delete``), not set.
        """
        return await self.record(
            EventType.PASSWORD_DELETE if removed else EventType.PASSWORD_CHANGE,
            by.principal,
            Outcome.ALLOW,
            channel=by.channel,
            source=by.source,
            detail=detail,
        )

    async def daemon_state(self, detail: Detail) -> bool:
        """Record meterd's own start or stop (``reboot``, by ``meterd`` on ``local``)."""
        return await self.record(
            EventType.REBOOT, DAEMON, Outcome.ALLOW, channel=Channel.LOCAL, detail=detail
        )

    def modbus_answered(self, function_code: int, outcome: Outcome) -> None:
        """Count a Modbus request by function and outcome in the metrics."""
        self.observer.modbus_request(function_code, outcome)

    def modbus_tally(self, function_code: int, outcome: Outcome) -> Tally:
        """The metrics' count of these Modbus answers, for a channel that counts per request itself."""
        return self.observer.modbus_tally(function_code, outcome)

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
