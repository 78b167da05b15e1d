"""The Modbus listeners: plain Modbus TCP and Modbus/TCP Security (mutual TLS).

meterd frames MBAP itself (an asyncio protocol) rather than running
pymodbus's server.  The framing is small (a 7-byte header and a PDU of at
most 253 bytes) and owning it gives what the enforcement needs and pymodbus's
server does not offer as stable hooks: a decision per request *before* any
register is touched, exception 01 for a refusal but 02 for an unmapped
address, the TLS handshake under our own timeout so a failed one can be
recorded, the client certificate of each connection, connection limits
checked at accept, a per-client request rate, and idle and half-open
timeouts.  It also keeps meterd off pymodbus's server internals, which
changed incompatibly across 3.x; pymodbus remains the reference client in
the tests and the baseline in the benchmark.

Each connection is served by
:class:`~meterd.channels.modbus.connection.ModbusConnection`, or on the
Modbus/TCP Security listener by
:class:`~meterd.channels.modbus.tls.ModbusTlsConnection`.

Each listener has its own budget of connections and request rate (a
:class:`~meterd.channels.modbus.limits.Pool`), so anonymous plain TCP clients
cannot use up what Modbus/TCP Security clients need.  A TLS connection first
holds a handshake slot (its own small budget, in total and per address), for
at most ``frame_timeout``; it takes a session slot only once the handshake has
succeeded with a verified client certificate.  Peers that never finish a
handshake can keep new TLS clients out while they fill the handshake budget,
but never take a session slot, so established sessions are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from meterd.channels.modbus.config import ModbusConfig
from meterd.channels.modbus.connection import ModbusConnection
from meterd.channels.modbus.limits import ConnectionLimits, Pool, RateLimiter
from meterd.channels.modbus.server_tls import ServerTls
from meterd.channels.modbus.service import ModbusService
from meterd.channels.modbus.tls import ModbusTlsConnection
from meterd.errors import ChannelError
from meterd.runtime import Runtime

log = logging.getLogger(__name__)

STOP_GRACE = 3.0


class ModbusListener:
    """The Modbus channel as the daemon runs it.

    Args:
        config: The ``[modbus]`` settings.
        runtime: The guard, the meter and the state directory.
        tls_check: The check of the TLS files, if the daemon began it already
            (:func:`~meterd.daemon.listeners.check_channel_files`).
    """

    name = "modbus"

    def __init__(
        self, config: ModbusConfig, runtime: Runtime, *, tls_check: asyncio.Task[ServerTls] | None = None
    ) -> None:
        self.config = config
        self.runtime = runtime
        self._tls_check = tls_check
        self.service = ModbusService(runtime, config.unit_ids)
        rate = config.max_requests_per_second
        #: One budget per listener ("tcp", "tls"): no listener's clients spend another's.
        self.pools = {
            "tcp": Pool(
                ConnectionLimits(config.max_connections, config.max_connections_per_client),
                RateLimiter(rate),
            ),
            "tls": Pool(
                ConnectionLimits(config.tls.max_connections, config.tls.max_connections_per_client),
                RateLimiter(rate),
                ConnectionLimits(config.tls.max_handshakes, config.tls.max_handshakes_per_client),
            ),
        }
        self._servers: list[asyncio.Server] = []
        self._connections: set[ModbusConnection] = set()
        self.ports: dict[str, int] = {}

    @property
    def counters(self) -> dict[str, int]:
        """Counts of requests, exceptions by code, refused connections and the like (for metrics)."""
        return dict(self.service.counters)

    async def start(self) -> None:
        """Bind the configured listeners.

        The TLS certificate, key and CA are checked here, before anything listens,
        but the TLS context is built only at the first TLS handshake.

        Raises:
            ChannelError: A certificate cannot be loaded or an address cannot be bound;
                nothing is left listening.
        """
        config = self.config
        if not config.enabled:
            return
        server_tls = None
        if config.tls.enabled:
            # Begun early by the daemon (the check takes tens of milliseconds), or now.
            server_tls = await (self._tls_check or ServerTls.checked(config.tls))
        try:
            if config.plain_tcp:
                await self._bind("tcp", config.port, None)
            if server_tls is not None:
                await self._bind("tls", config.tls.port, server_tls)
        except OSError as e:
            await self.stop()
            raise ChannelError(f"cannot listen on {config.listen}: {e.strerror or e}") from e

    async def _bind(self, kind: str, port: int, server_tls: ServerTls | None) -> None:
        """Listen on ``port``: Modbus/TCP Security with ``server_tls``, plain Modbus TCP without."""
        pool = self.pools[kind]

        def accept() -> ModbusConnection:
            if server_tls is None:
                return ModbusConnection(
                    self.config, self.runtime, self.service, pool, connections=self._connections
                )
            return ModbusTlsConnection(
                self.config, self.runtime, self.service, pool, server_tls, connections=self._connections
            )

        server = await asyncio.get_running_loop().create_server(accept, self.config.listen, port)
        self._servers.append(server)
        self.ports[kind] = server.sockets[0].getsockname()[1]
        log.info("modbus: %s listening on %s:%d", kind, self.config.listen, self.ports[kind])

    async def stop(self) -> None:
        """Stop accepting, close every connection, and return within a few seconds.

        Connections are hung up first, so a task that is recording (a login
        failure, a write) finishes its record; only a task still busy after
        the grace period is cancelled.
        """
        for server in self._servers:
            server.close()
        await stop_all(self._connections, STOP_GRACE)
        await self.service.settle(STOP_GRACE)
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), STOP_GRACE)
        self._servers.clear()


async def stop_all(connections: set[ModbusConnection], grace: float) -> None:
    """Close every connection and wait (at most ``grace`` twice) until all have finished.

    Handshakes are cancelled, not hung up on; every other connection is hung up
    first, so a request that is recording (a login failure, a write) finishes its
    record; only what is still busy after the grace period is cancelled.
    """
    for connection in list(connections):
        if connection.handshaking and connection.task is not None:
            connection.task.cancel()
        else:
            connection.hang_up()
    pending = [c.finished for c in connections]
    if pending:
        await asyncio.wait(pending, timeout=grace)
    for connection in list(connections):
        if connection.task is not None:
            connection.task.cancel()
    pending = [c.finished for c in connections]
    if pending:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait(pending, timeout=grace)
