"""Modbus/TCP Security logins: the record of a failed handshake, and the session of a verified certificate.

The handshake itself runs in
:class:`~meterd.channels.modbus.connection.ModbusConnection` (it swaps the
connection's transport); what follows it is here.  A client proves who it is
with its certificate alone: the application is the one that lists the
certificate's fingerprint, and the certificate's role extension names the one
role the session acts through.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from meterd.channels.modbus.certificates import identify
from meterd.channels.modbus.service import Peer
from meterd.guard import Certificate, Guard, Session
from meterd.guard.credentials import application_for_certificate
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel

#: A TLS client needs one of these to open a session at all.
SESSION_PERMISSIONS = (
    Permission.FS_READ_ONLY,
    Permission.PEAK_DEMAND_RESET,
    Permission.TEST_MODE_TOGGLE,
    Permission.TIME_SYNC,
    Permission.COMM_CONFIG,
    Permission.DSS_CONFIG,
)


async def handshake_failed(guard: Guard, source: str, error: ssl.SSLError | TimeoutError) -> None:
    """Record a failed or timed-out handshake as a login failure, and count it."""
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
