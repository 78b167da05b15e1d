"""One Modbus/TCP (or Modbus/TCP Security) peer: admission, TLS login, the request loop.

Each connection is one task: read a frame (the first byte within
``idle_timeout``, the rest within ``frame_timeout``), wait for a rate slot,
let :class:`~meterd.channels.modbus.service.ModbusService` answer, write the
answer.  Bad framing closes the connection; nothing one client does reaches
another client's task except through its listener's limits.

A TLS connection first holds a handshake slot (its own small budget, in total
and per address) for at most ``frame_timeout``, and takes a session slot only
once the handshake has succeeded with a verified client certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time

from meterd.channels.modbus import protocol
from meterd.channels.modbus.certificates import identify
from meterd.channels.modbus.config import ModbusConfig
from meterd.channels.modbus.limits import ConnectionLimits, Pool, RateLimiter
from meterd.channels.modbus.service import ModbusService, Peer, SessionEndedError
from meterd.errors import ChannelError
from meterd.guard import Certificate, Session
from meterd.guard.credentials import application_for_certificate
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.runtime import Runtime

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


class ModbusConnection:
    """Serves the connections of one Modbus listener, one task per connection.

    Args:
        config: The ``[modbus]`` settings.
        runtime: The guard, the meter and the state directory.
        service: The listener's request handler (and its counters).
        ssl_context: The server TLS context (None without Modbus/TCP Security).
        tasks: The listener's running connection tasks and their writers, so
            that stopping can hang them up.
        handshaking: The listener's tasks still in their TLS handshake (stopping
            cancels them rather than closing the socket under ``start_tls``).
    """

    def __init__(
        self,
        config: ModbusConfig,
        runtime: Runtime,
        service: ModbusService,
        ssl_context: ssl.SSLContext | None,
        *,
        tasks: dict[asyncio.Task[None], asyncio.StreamWriter],
        handshaking: set[asyncio.Task[None]],
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.service = service
        self._ssl = ssl_context
        self._tasks = tasks
        self._handshaking = handshaking

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pool: Pool, *, tls: bool
    ) -> None:
        """Serve one accepted connection until it ends; never raises for what the peer does.

        Args:
            reader: The connection's stream reader.
            writer: The connection's stream writer (closed on return).
            pool: The budget of the listener that accepted it.
            tls: True on the Modbus/TCP Security listener.
        """
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
            protocol.FramingError,
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
                header = protocol.parse_header(first + await reader.readexactly(protocol.MBAP_SIZE - 1))
                body = await reader.readexactly(header.pdu_length)
            wait = rate.delay(client, time.monotonic())
            if wait > 0:
                self.service.counters["throttled"] += 1
                if wait > config.idle_timeout:
                    return
                await asyncio.sleep(wait)
            answer = await self.service.handle(peer, header, body)
            writer.write(protocol.frame(header, answer))
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
            try:
                async with asyncio.timeout(self.config.frame_timeout):
                    await writer.start_tls(self._ssl)
            finally:
                # Past start_tls a stop may hang up rather than cancel: the failure's record
                # below must not be cancelled half-way (a refusal is always recorded).
                task = asyncio.current_task()
                if task is not None:
                    self._handshaking.discard(task)
        except (ssl.SSLError, TimeoutError) as e:
            why = "tls_timeout" if isinstance(e, TimeoutError) else "tls_handshake"
            error = getattr(e, "verify_message", None) or getattr(e, "reason", None) or why
            await guard.refuse(
                "", Channel.MODBUS, source, {"reason": why, "error": str(error)[:200]}, kind="login"
            )
            guard.login_failed(Channel.MODBUS)
            return False
        ssl_object = writer.get_extra_info("ssl_object")
        # The context requires a client certificate; a handshake without one is no login.
        return ssl_object is not None and bool(ssl_object.getpeercert(binary_form=True))

    async def _tls_login(self, writer: asyncio.StreamWriter, source: str) -> Peer | None:
        """Identify the application by the verified certificate of the handshake, open its session."""
        guard = self.runtime.guard
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        identity = identify(der)
        name = application_for_certificate(guard.policy, identity.fingerprint)
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
