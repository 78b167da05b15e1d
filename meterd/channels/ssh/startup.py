"""SSH connections in their start-up: the listener's slots and each connection's watch; no I/O.

A connection is in its start-up from accept until its first session opens, and
again whenever its last session closes: it holds one of the listener's
:class:`StartupSlots` all that time, authenticated or not.  Once authenticated,
a connection with no session open has a bounded time to open one.

When every slot is held, a new connection is not turned away: it takes the slot
of the oldest start-up of the busiest source (the source holding the most
slots; among equals, the one holding the oldest), which is closed.  So no
number of idle or half-finished connections can keep a client from another
address out, as a cap that refuses newcomers would: to push out one client's
login an attacker must hold every slot from as many sources as there are slots
and keep opening new ones faster than the client authenticates.  IPv6 peers
count per /64 (a single host is usually given a whole /64), IPv4 per address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
from collections.abc import Callable


def source_key(address: str) -> str:
    """The source a peer address counts under: an IPv4 address, or an IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class StartupSlots:
    """The start-up slots of one listener: at most ``total``, ``per_source`` from one source.

    Args:
        total: Start-ups at once; past it, the busiest source's oldest makes room.
        per_source: Start-ups at once from one source; past it, the newcomer is refused.
    """

    def __init__(self, total: int, per_source: int) -> None:
        self.total = total
        self.per_source = per_source
        #: Each source's holders, oldest first (dicts keep insertion order).
        self._holders: dict[str, dict[SessionWatch, int]] = {}
        self._count = 0
        self._serial = itertools.count()

    @property
    def open(self) -> int:
        """Slots held now."""
        return self._count

    def admit(self, watch: SessionWatch, source: str) -> bool:
        """Give ``watch`` a slot for ``source``, making room if every slot is held.

        Returns:
            False (nothing held) if ``source`` holds ``per_source`` slots already.
        """
        held = self._holders.get(source)
        if held is not None and len(held) >= self.per_source:
            return False
        if self._count >= self.total:
            self._make_room()
        self._holders.setdefault(source, {})[watch] = next(self._serial)
        self._count += 1
        return True

    def release(self, watch: SessionWatch, source: str) -> None:
        """Give back ``watch``'s slot (nothing if it holds none)."""
        held = self._holders.get(source)
        if held is None or held.pop(watch, None) is None:
            return
        self._count -= 1
        if not held:
            del self._holders[source]

    def _make_room(self) -> None:
        # The busiest source; among equals the one whose oldest start-up is oldest.
        source = max(
            self._holders, key=lambda s: (len(self._holders[s]), -next(iter(self._holders[s].values())))
        )
        victim = next(iter(self._holders[source]))
        self.release(victim, source)
        victim.crowded_out()


class SessionWatch:
    """The start-up slot and no-session timer of one connection.

    Args:
        slots: The listener's start-up slots.
        timeout: Seconds an authenticated connection may hold no session.
        expired: Called (once per expiry) when that time has passed with no session open.
        crowded: Called when the connection lost its slot to a newer one, or found none
            free when its last session closed: it must be closed.
    """

    __slots__ = (
        "_authenticated",
        "_crowded",
        "_expired",
        "_gone",
        "_holding",
        "_sessions",
        "_slots",
        "_source",
        "_timeout",
        "_timer",
    )

    def __init__(
        self,
        slots: StartupSlots,
        timeout: float,
        expired: Callable[[], None],
        crowded: Callable[[], None],
    ) -> None:
        self._slots = slots
        self._timeout = timeout
        self._expired = expired
        self._crowded = crowded
        self._source: str | None = None
        self._holding = False
        self._gone = False
        self._authenticated = False
        self._sessions = 0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def sessions(self) -> int:
        """Sessions open on the connection now."""
        return self._sessions

    def admit(self, address: str) -> bool:
        """Take a start-up slot for a connection from ``address``; False if its source has none left."""
        self._source = source_key(address)
        self._holding = self._slots.admit(self, self._source)
        return self._holding

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
        """A session closed; with none left, the connection is in its start-up again."""
        self._sessions -= 1
        if self._sessions > 0 or self._gone or self._source is None:
            return
        self._holding = self._slots.admit(self, self._source)
        if not self._holding:
            self._crowded()
            return
        self._arm()

    def crowded_out(self) -> None:
        """The slots took this connection's slot for a newer connection (see :class:`StartupSlots`)."""
        self._holding = False
        self._disarm()
        if not self._gone:
            self._crowded()

    def lost(self) -> None:
        """The connection is gone: give everything back (idempotent)."""
        self._gone = True
        self._authenticated = False
        self._release()
        self._disarm()

    def _release(self) -> None:
        if self._holding and self._source is not None:
            self._slots.release(self, self._source)
        self._holding = False

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
