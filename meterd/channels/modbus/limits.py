"""Per-listener and per-client limits: open connections and request rate; no I/O.

A client is a peer address.  Each listener has its own :class:`Pool`, so the
anonymous clients of plain Modbus TCP can neither take the connections nor
spend the request rate that Modbus/TCP Security clients need, even from the
same address.  Connections beyond either limit of their pool are closed as
soon as they are accepted (Modbus/TCP Security: beyond the handshake limits at
accept, beyond the connection limits once the handshake has succeeded);
requests beyond the rate are delayed (the next request is read later, so a
flooding client fills its own TCP window, not the meter's CPU), never answered
early and never dropped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

#: Idle rate-limit entries are forgotten once there are this many (an idle entry equals a fresh one).
PRUNE_AT = 1024


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


class RateLimiter:
    """Requests per second per client, with a burst of one second's worth (GCRA).

    Args:
        rate: Sustained requests per second allowed per client.
    """

    def __init__(self, rate: int) -> None:
        self.interval = 1.0 / rate
        self._slack = (rate - 1) * self.interval
        self._due: dict[str, float] = {}

    def delay(self, client: str, now: float) -> float:
        """Reserve a slot for one request of ``client``; return how long it must wait first."""
        due = self._due.get(client, now)
        due = max(due, now)
        self._due[client] = due + self.interval
        if len(self._due) > PRUNE_AT:
            self._due = {c: t for c, t in self._due.items() if t > now}
        return max(0.0, due - now - self._slack)


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
