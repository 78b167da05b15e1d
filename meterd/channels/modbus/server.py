"""The Modbus listeners: plain Modbus TCP and Modbus/TCP Security (mutual TLS).

meterd frames MBAP itself over asyncio streams rather than running
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

Each connection is one task: read a frame (the first byte within
``idle_timeout``, the rest within ``frame_timeout``), wait for a rate slot,
let :class:`~meterd.channels.modbus.service.ModbusService` answer, write the
answer.  Bad framing closes the connection; nothing one client does reaches
another client's task except through its listener's limits.

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
import ssl
import time

from meterd.channels.base import Runtime
from meterd.channels.modbus import pdu
from meterd.channels.modbus.certificates import identify, server_context
from meterd.channels.modbus.config import ModbusConfig
from meterd.channels.modbus.limits import ConnectionLimits, Pool, RateLimiter
from meterd.channels.modbus.service import ModbusService, Peer, SessionEndedError
from meterd.errors import ChannelError
from meterd.guard import Certificate, Session
from meterd.guard.credentials import application_for_certificate
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Outcome
from meterd.seclog import EventType

log = logging.getLogger(__name__)

#: A TLS client needs one of these to open a session at all.
SESSION_PERMISSIONS = (
    Permission.FS_READ_ONLY,
    Permission.PEAK_DEMAND_RESET,
    Permission.TEST_MODE_TOGGLE,
    Permission.TIME_SYNC,
    Permission.COMM_CONFIG,
    Permission.DSS_CONFIG,
)
STOP_GRACE = 3.0


class ModbusListener:
    """The Modbus channel as the daemon runs it.

    Args:
        config: The ``[modbus]`` settings.
        runtime: The guard, the meter and the state directory.
    """

    name = "modbus"

    def __init__(self, config: ModbusConfig, runtime: Runtime) -> None:
        self.config = config
        self.runtime = runtime
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
        self._tasks: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._handshaking: set[asyncio.Task[None]] = set()
        self._ssl: ssl.SSLContext | None = None
        self.ports: dict[str, int] = {}

    @property
    def counters(self) -> dict[str, int]:
        """Counts of requests, exceptions by code, refused connections and the like (for metrics)."""
        return dict(self.service.counters)

    async def start(self) -> None:
        """Bind the configured listeners.

        Raises:
            ChannelError: A certificate cannot be loaded or an address cannot be bound;
                nothing is left listening.
        """
        config = self.config
        if not config.enabled:
            return
        if config.tls.enabled:
            self._ssl = server_context(config.tls)
        try:
            if config.plain_tcp:
                await self._bind("tcp", config.port, tls=False)
            if config.tls.enabled:
                await self._bind("tls", config.tls.port, tls=True)
        except OSError as e:
            await self.stop()
            raise ChannelError(f"modbus: cannot listen on {config.listen}: {e.strerror or e}") from e

    async def _bind(self, kind: str, port: int, *, tls: bool) -> None:
        pool = self.pools[kind]

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._connection(reader, writer, pool, tls=tls)

        server = await asyncio.start_server(accept, self.config.listen, port)
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
        # A handshake is cancelled, not hung up on: closing the socket under start_tls
        # leaves asyncio's stream writer without a transport.
        for task in list(self._handshaking):
            task.cancel()
        for task, writer in list(self._tasks.items()):
            if task not in self._handshaking:
                writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=STOP_GRACE)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=STOP_GRACE)
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), STOP_GRACE)
        self._servers.clear()

    # -- one connection -----------------------------------------------------

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pool: Pool, *, tls: bool
    ) -> None:
        peer_address = writer.get_extra_info("peername") or ("?", 0)
        client = str(peer_address[0])
        source = f"{client}:{peer_address[1]}"
        # A TLS connection is held in the handshake budget until it has proved who it is.
        held: ConnectionLimits | None = pool.handshakes if tls else pool.connections
        if held is None or not held.admit(client):
            self.service.counters["connections_refused"] += 1
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks[task] = writer
        peer: Peer | None = None
        try:
            if tls:
                held = None  # _past_handshake gives the handshake slot back, whatever happens
                held = await self._past_handshake(writer, source, client, pool)
                peer = await self._tls_login(writer, source) if held is not None else None
            else:
                peer = Peer(self.runtime.guard.anonymous_session(Channel.MODBUS, source))
            if peer is not None:
                await self._requests(reader, writer, peer, client, pool.rate)
        except (
            pdu.FramingError,
            ConnectionError,
            asyncio.IncompleteReadError,
            TimeoutError,
            ssl.SSLError,
        ) as e:
            self.service.counters["connections_dropped"] += 1
            log.debug("modbus: %s closed: %s", source, e)
        except SessionEndedError:
            self.service.counters["sessions_ended"] += 1
        except asyncio.CancelledError:
            # stop() cancels a connection task that outlives the grace period; the task
            # is the connection's own top level, and asyncio's start_server reports a
            # cancelled handler as an error.
            self.service.counters["connections_stopped"] += 1
        finally:
            if held is not None:
                held.release(client)
            if task is not None:
                self._tasks.pop(task, None)
                self._handshaking.discard(task)
            if peer is not None and peer.tls:
                await asyncio.shield(self.runtime.guard.close_session(peer.session, reason="disconnected"))
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _requests(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Peer,
        client: str,
        rate: RateLimiter,
    ) -> None:
        config = self.config
        while True:
            try:
                async with asyncio.timeout(config.idle_timeout):
                    first = await reader.read(1)
            except TimeoutError:
                self.service.counters["idle_timeouts"] += 1
                return
            if not first:
                return
            async with asyncio.timeout(config.frame_timeout):
                header = pdu.parse_header(first + await reader.readexactly(pdu.MBAP_SIZE - 1))
                body = await reader.readexactly(header.pdu_length)
            wait = rate.delay(client, time.monotonic())
            if wait > 0:
                self.service.counters["throttled"] += 1
                if wait > config.idle_timeout:
                    return
                await asyncio.sleep(wait)
            answer = await self.service.handle(peer, header, body)
            writer.write(pdu.frame(header, answer))
            await writer.drain()

    async def _past_handshake(
        self, writer: asyncio.StreamWriter, source: str, client: str, pool: Pool
    ) -> ConnectionLimits | None:
        """Run the handshake in the slot taken at accept, then trade it for a session slot.

        Returns:
            ``pool.connections``, now holding the connection; None if the handshake
            failed or no session slot is free (then nothing is held).
        """
        handshakes = pool.handshakes
        task = asyncio.current_task()
        if handshakes is None or task is None:
            raise ChannelError("modbus: TLS connection without a handshake budget")
        self._handshaking.add(task)
        try:
            verified = await self._handshake(writer, source)
        finally:
            self._handshaking.discard(task)
            handshakes.release(client)
        if not verified:
            return None
        if not pool.connections.admit(client):
            self.service.counters["connections_refused"] += 1
            return None
        return pool.connections

    async def _handshake(self, writer: asyncio.StreamWriter, source: str) -> bool:
        """Run the TLS handshake under ``frame_timeout``; True if the client presented a verified certificate.

        A failed or timed-out handshake is recorded as a login failure.
        """
        guard = self.runtime.guard
        if self._ssl is None:
            raise ChannelError("modbus: TLS connection without a TLS context")
        try:
            async with asyncio.timeout(self.config.frame_timeout):
                await writer.start_tls(self._ssl)
        except (ssl.SSLError, TimeoutError) as e:
            why = "tls_timeout" if isinstance(e, TimeoutError) else "tls_handshake"
            error = getattr(e, "verify_message", None) or getattr(e, "reason", None) or why
            await guard.record(
                EventType.LOGIN_FAILURE,
                "",
                Outcome.DENY,
                channel=Channel.MODBUS,
                source=source,
                detail={"reason": why, "error": str(error)[:200]},
            )
            guard.observer.login_failure(Channel.MODBUS)
            return False
        ssl_object = writer.get_extra_info("ssl_object")
        # The context requires a client certificate; a handshake without one is no login.
        return ssl_object is not None and bool(ssl_object.getpeercert(binary_form=True))

    async def _tls_login(self, writer: asyncio.StreamWriter, source: str) -> Peer | None:
        """Identify the application by the verified certificate of the handshake, open its session."""
        guard = self.runtime.guard
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        identity = identify(der)
        name = application_for_certificate(guard.compiled.policy, identity.fingerprint)
        claimed = name or identity.common_name or identity.fingerprint
        if not await guard.authenticate(Channel.MODBUS, source, claimed, Certificate(identity.fingerprint)):
            return None
        unit = self.config.unit_ids[0]
        session = await guard.open_session(
            claimed, Channel.MODBUS, source, SESSION_PERMISSIONS, resource=f"/modbus/unit/{unit}"
        )
        if not isinstance(session, Session):
            return None
        session.on_close.append(lambda _reason: writer.close())
        # The certificate names the one role this connection acts through (none: the
        # NULL role); the guard enforces it on every request.
        session.role_limit = (identity.role.lower(),) if identity.role and identity.role.isascii() else ()
        return Peer(session, tls=True)
