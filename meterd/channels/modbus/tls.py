"""One Modbus/TCP Security peer: the TLS handshake, the certificate's session, its close.

:class:`ModbusTlsConnection` is a
:class:`~meterd.channels.modbus.connection.ModbusConnection` that serves
requests only once the client has proved who it is, with its certificate
alone: the application is the one that lists the certificate's fingerprint,
and the certificate's role extension names the one role the session acts
through.  Once requests run, it is the plain connection's request loop.

A TLS connection first holds a handshake slot (its own small budget, in total
and per address) for at most ``frame_timeout``, and takes a session slot only
once the handshake has succeeded with a verified client certificate.  A failed
or timed-out handshake is recorded as a login failure, and so is a connection
refused because the server's TLS context cannot be built (its files changed
since meterd started, see :mod:`~meterd.channels.modbus.server_tls`); the
session is closed (and recorded) before the connection has finished.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

from meterd.channels.modbus.certificates import identify
from meterd.channels.modbus.config import ModbusConfig
from meterd.channels.modbus.connection import ModbusConnection
from meterd.channels.modbus.limits import Pool
from meterd.channels.modbus.server_tls import ServerTls
from meterd.channels.modbus.service import ModbusService, Peer
from meterd.errors import ChannelError
from meterd.guard import Certificate, Guard, Session
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


async def handshake_failed(
    guard: Guard, source: str, error: ssl.SSLError | TimeoutError | ChannelError
) -> None:
    """Record a failed, timed-out or impossible (no server context) handshake as a login failure; count it."""
    if isinstance(error, ChannelError):
        why, text = "tls_context", str(error)
    else:
        why = "tls_timeout" if isinstance(error, TimeoutError) else "tls_handshake"
        text = getattr(error, "verify_message", None) or getattr(error, "reason", None) or why
    await guard.refuse("", Channel.MODBUS, source, {"reason": why, "error": str(text)[:200]}, kind="login")
    guard.login_failed(Channel.MODBUS)


async def login(
    guard: Guard, ssl_object: ssl.SSLObject, source: str, unit: int, hang_up: Callable[[str], None]
) -> Peer | None:
    """Identify the application by the handshake's verified certificate and open its session.

    Args:
        guard: Authenticates and opens the session (both recorded).
        ssl_object: The connection's TLS state, after a handshake with a verified client certificate.
        source: The peer address, for the log.
        unit: The unit id the session's login is checked on.
        hang_up: Called when the guard ends the session (idle, revoked).

    Returns:
        The connection's peer, or None if the login was refused.
    """
    identity = identify(ssl_object.getpeercert(binary_form=True) or b"")
    name = application_for_certificate(guard.policy, identity.fingerprint)
    claimed = name or identity.common_name or identity.fingerprint
    if not await guard.authenticate(Channel.MODBUS, source, claimed, Certificate(identity.fingerprint)):
        return None
    session = await guard.open_session(
        claimed, Channel.MODBUS, source, SESSION_PERMISSIONS, resource=f"/modbus/unit/{unit}"
    )
    if not isinstance(session, Session):
        return None
    session.on_close.append(hang_up)
    # The certificate names the one role this connection acts through (none: the
    # NULL role); the guard enforces it on every request.
    session.role_limit = (identity.role.lower(),) if identity.role and identity.role.isascii() else ()
    return Peer(session, tls=True)


class ModbusTlsConnection(ModbusConnection):
    """Serves one accepted connection of the Modbus/TCP Security listener: handshake, login, then requests.

    Args:
        config: The ``[modbus]`` settings.
        runtime: The guard, the meter and the state directory.
        service: The listener's request handler (and its counters).
        pool: The budget of the listener that accepted it (with its handshake budget).
        server_tls: The server's TLS context (which requires a client certificate), built on demand.
        connections: The listener's open connections (this one adds and removes itself).
    """

    def __init__(
        self,
        config: ModbusConfig,
        runtime: Runtime,
        service: ModbusService,
        pool: Pool,
        server_tls: ServerTls,
        *,
        connections: set[ModbusConnection],
    ) -> None:
        super().__init__(config, runtime, service, pool, connections=connections)
        self._tls = server_tls
        self._plain: asyncio.Transport | None = None  # the TCP transport, under TLS's once it runs
        self._logout: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Hold a handshake slot (or close the connection at once), then run the handshake and the login."""
        # Held in the handshake budget until it has proved who it is.
        plain = self._accept(transport, self._pool.handshakes)
        if plain is None:
            return
        self._plain = plain
        plain.pause_reading()  # the ClientHello is start_tls's to read, not ours
        self._run(self._start())

    def _end(self) -> None:
        """Close the session (and record it) once nothing else runs for it; then the connection is done."""
        peer, self._peer = self._peer, None
        if peer is None:
            self._finish()
            return
        # Not self.task: stopping never cancels the logout's record half-way.
        logout = self._loop.create_task(self.runtime.guard.close_session(peer.session, reason="disconnected"))
        self._logout = logout
        logout.add_done_callback(lambda _t: self._finish())

    async def _start(self) -> None:
        """Handshake, trade the handshake slot for a session slot, log in; then serve requests."""
        try:
            await self._login_steps()
        except asyncio.CancelledError:
            # stop() cancels a handshake, and what outlives its grace period.
            self.service.counters["connections_stopped"] += 1
            self._close()
            raise
        except ConnectionError as e:
            self._drop("connections_dropped", e)
        except Exception:  # fail closed: a fault in one login ends only its connection
            log.exception("modbus: TLS login from %s failed", self._source)
            self._close()
        finally:
            if self._closing and self._transport is self._plain:
                self.connection_lost(None)  # closed before TLS ran: asyncio will not say so

    async def _login_steps(self) -> None:
        try:
            verified = await self._handshake()
        finally:
            if self._held is not None:  # the handshake slot, still held unless the connection is gone
                self._held.release(self._client)
                self._held = None
        if not verified or self._closing or not self._admit(self._pool.connections):
            self._close()
            return
        assert self._transport is not None
        ssl_object = self._transport.get_extra_info("ssl_object")
        self._peer = await login(
            self.runtime.guard, ssl_object, self._source, self.config.unit_ids[0], self._session_closed
        )
        if self._peer is None or self._closing:
            self._close()
            return
        self._start_requests()

    def _session_closed(self, _reason: str) -> None:
        """The guard ended the session (idle, revoked): hang up."""
        self._close()

    async def _handshake(self) -> bool:
        """Run the TLS handshake under ``frame_timeout``; True if the client presented a verified certificate.

        A failed or timed-out handshake is recorded as a login failure, and so is one
        that cannot start because the server's context cannot be built.
        """
        transport = self._transport
        assert transport is not None
        try:
            context = self._tls.context()  # built at the first handshake, then the same one
        except ChannelError as e:
            await handshake_failed(self.runtime.guard, self._source, e)
            return False
        self.handshaking = True
        try:
            try:
                async with asyncio.timeout(self.config.frame_timeout):
                    upgraded = await self._loop.start_tls(transport, self, context, server_side=True)
            finally:
                # Past start_tls a stop may hang up rather than cancel: the failure's record
                # below must not be cancelled half-way (a refusal is always recorded).
                self.handshaking = False
        except (ssl.SSLError, TimeoutError) as e:
            await handshake_failed(self.runtime.guard, self._source, e)
            return False
        if upgraded is None:
            return False
        assert isinstance(upgraded, asyncio.Transport)
        self._transport = upgraded
        ssl_object = upgraded.get_extra_info("ssl_object")
        # The context requires a client certificate; a handshake without one is no login.
        return ssl_object is not None and bool(ssl_object.getpeercert(binary_form=True))
