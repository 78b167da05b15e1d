"""Per-listener and per-client limits: open connections and request rate; no I/O.

A client is a peer address.  Each listener has its own :class:`Pool`, so the
anonymous clients of plain Modbus TCP can neither take the connections nor
spend the request rate that Modbus/TCP Security clients need, even from the
same address.  Connections beyond either limit of their pool are closed as
soon as they are accepted (Modbus/TCP Security: beyond the handshake limits at
accept, beyond the connection limits once the handshake has succeeded);
requests beyond the rate are delayed (the next request is read later, so a
flooding client fills its own TCP window, not the meter's CPU), never answered
early and never dropped (:meth:`~meterd.channels.ratelimit.RateLimiter.delay`,
the limiter the front panel uses too).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from meterd.channels.ratelimit import RateLimiter

__all__ = ["ConnectionLimits", "Pool", "RateLimiter"]


class ConnectionLimits:
    """Counts open connections, in total and per client.

    Args:
        total: Most connections open at once.
        per_client: Most connections open at once from one client.
    """

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self._open: Counter[str] = Counter()
        self._count = 0

    @property
    def open(self) -> int:
        """Connections open now."""
        return self._count

    def admit(self, client: str) -> bool:
        """Count a new connection from ``client``; False (and nothing counted) if over a limit."""
        if self._count >= self.total or self._open[client] >= self.per_client:
            return False
        self._open[client] += 1
        self._count += 1
        return True

    def release(self, client: str) -> None:
        """Forget one admitted connection of ``client``."""
        self._count -= 1
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]


@dataclass(frozen=True, slots=True)
class Pool:
    """What the clients of one listener share, and only they.

    Attributes:
        connections: The listener's open connections (TLS: established sessions), in
            total and per client.
        rate: The request rate of each of the listener's clients.
        handshakes: TLS handshakes in progress, in total and per client (None: a
            listener without TLS).  Apart from ``connections``, so peers that never finish
            a handshake cannot hold the slots of clients that proved who they are.
    """

    connections: ConnectionLimits
    rate: RateLimiter
    handshakes: ConnectionLimits | None = None
