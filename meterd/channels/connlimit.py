"""A connection counter for channels that refuse connections past a limit: in total and per client; no I/O.

A client is a peer address (never ``address:port``: a client gets a new port
with every connection and must not get a new allowance with it).  Modbus
counts its open connections and TLS handshakes with it.  (SSH's start-ups make
room for newcomers instead: see :mod:`meterd.channels.ssh.startup`.)
"""

from __future__ import annotations

from collections import Counter


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
