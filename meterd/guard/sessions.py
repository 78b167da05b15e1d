"""Open sessions: who is logged in where, and since when they were last active.

A :class:`Session` is the guard's handle for a logged-in principal; channels
hold it and pass it back with every request.  Its mutable fields (last
activity, closed) are changed only by the guard.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meterd.policy.grants import PrincipalKind
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel

if TYPE_CHECKING:
    from meterd.guard.fastpath import Remembered

CloseCallback = Callable[[str], None]


@dataclass(slots=True, eq=False)
class Session:
    """A logged-in principal on one channel.

    Attributes:
        id: Random identifier, safe to show (panel sessions use it as a token).
        principal: User or application name, or ``anonymous``.
        kind: What sort of principal.
        channel: Where the session runs.
        source: Peer address or device.
        opened_at: Monotonic time of login.
        last_active: Monotonic time of the last request.
        closed: Set by the guard when the session ends; later requests are refused.
        on_close: Called with the reason when the guard ends the session
            (idle timeout, principal removed), so the channel can hang up.
        role_limit: When set, the session acts only through these roles (a
            Modbus/TCP Security certificate names one); an empty tuple is the
            NULL role, which is granted nothing.  None: every role of the principal.
        allows: The guard's memory of the session's aggregated allows, by
            permission and resource (see :mod:`meterd.guard.fastpath`).
        expires_at: Monotonic time the session ends whatever its activity (a
            directory session's bounded lifetime); None for no limit.
        directory: The principal logged in through a directory (set at login).
    """

    id: str
    principal: str
    kind: PrincipalKind
    channel: Channel
    source: str
    opened_at: float
    last_active: float
    closed: bool = False
    on_close: list[CloseCallback] = field(default_factory=list)
    role_limit: tuple[str, ...] | None = None
    allows: dict[tuple[Permission, str], Remembered] = field(default_factory=dict, repr=False)
    expires_at: float | None = None
    directory: bool = False


class SessionRegistry:
    """Every open session, by id."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def open(self, principal: str, kind: PrincipalKind, channel: Channel, source: str, now: float) -> Session:
        """Register and return a new session."""
        session = Session(secrets.token_hex(16), principal, kind, channel, source, now, now)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        """Return the open session with this id, or None."""
        return self._sessions.get(session_id)

    def remove(self, session: Session) -> bool:
        """Forget a session; return False if it was already gone."""
        return self._sessions.pop(session.id, None) is not None

    def count(self, channel: Channel) -> int:
        """Open sessions on ``channel``."""
        return sum(1 for s in self._sessions.values() if s.channel is channel)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))
