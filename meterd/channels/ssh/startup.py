"""One SSH connection's start-up slot and its no-session timer; no I/O.

A connection is in its start-up from accept until its first session opens: it
holds a slot of the listener's :class:`~meterd.channels.connlimit.ConnectionLimits`
(in total and per peer address) all that time, authenticated or not.  Once
authenticated, a connection with no session open has a bounded time to open
one: the timer runs after authentication and again whenever its last session
closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from meterd.channels.connlimit import ConnectionLimits


class SessionWatch:
    """The start-up slot and no-session timer of one connection.

    Args:
        startups: The listener's start-up slots.
        timeout: Seconds an authenticated connection may hold no session.
        expired: Called (once per expiry) when that time has passed with no session open.
    """

    __slots__ = ("_address", "_authenticated", "_expired", "_sessions", "_startups", "_timeout", "_timer")

    def __init__(self, startups: ConnectionLimits, timeout: float, expired: Callable[[], None]) -> None:
        self._startups = startups
        self._timeout = timeout
        self._expired = expired
        self._address: str | None = None  # set while the connection holds a start-up slot
        self._authenticated = False
        self._sessions = 0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def sessions(self) -> int:
        """Sessions open on the connection now."""
        return self._sessions

    def admit(self, address: str) -> bool:
        """Take a start-up slot for a connection from ``address``; False if none is free."""
        if not self._startups.admit(address):
            return False
        self._address = address
        return True

    def authenticated(self) -> None:
        """The client has authenticated: the no-session time starts."""
        self._authenticated = True
        self._arm()

    def session_opened(self) -> None:
        """A session opened: the start-up is over and the timer stops."""
        self._sessions += 1
        self._release()
        self._disarm()

    def session_closed(self) -> None:
        """A session closed; with none left, the no-session time starts again."""
        self._sessions -= 1
        self._arm()

    def lost(self) -> None:
        """The connection is gone: give everything back (idempotent)."""
        self._authenticated = False
        self._release()
        self._disarm()

    def _release(self) -> None:
        if self._address is not None:
            self._startups.release(self._address)
            self._address = None

    def _arm(self) -> None:
        if self._authenticated and self._sessions == 0 and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._fire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if self._authenticated and self._sessions == 0:
            self._expired()
