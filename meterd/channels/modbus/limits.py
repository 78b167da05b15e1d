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
the limiter the front panel uses too).  The connection counter is the one SSH
uses too (:class:`~meterd.channels.connlimit.ConnectionLimits`).
"""

from __future__ import annotations

from meterd.channels.connlimit import ConnectionLimits
from meterd.channels.ratelimit import RateLimiter
from meterd.record import record

__all__ = ["ConnectionLimits", "Pool", "RateLimiter"]


@record
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
