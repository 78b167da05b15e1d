"""RADIUS as a directory backend: PAP logins to up to two servers, replies verified in full.

A login sends one Access-Request (User-Name, User-Password hidden as RFC 2865
says, NAS-Identifier, and a Message-Authenticator) to the first server,
retransmits it ``retries`` times, then tries the second server with a fresh
request.  Each server gets at most its share of the time left before the
deadline, so a silent first server never uses up the second one's chance.

Invariants:
    * Only a reply that passes :func:`~meterd.directory.radius_codec.decode_reply`
      (identifier, Response Authenticator, Message-Authenticator) and comes
      from the server's own address and port is an answer.  Anything else is
      logged with its reason and discarded, exactly as if nothing had come:
      an unsigned Access-Accept can never log anyone in (CVE-2024-3596).
    * Access-Reject raises :class:`DirectoryRefused`; so does
      Access-Challenge (meterd does not answer challenges) and an accept
      whose scope attribute is unreadable or ambiguous.
    * :meth:`RadiusBackend.authenticate` returns or raises by its deadline.
"""

from __future__ import annotations

import logging
import secrets
import socket
import time
from dataclasses import dataclass

from meterd.directory.backend import DirectoryIdentity, DirectoryRefused, DirectoryUnreachable
from meterd.directory.radius_codec import (
    ACCESS_ACCEPT,
    ACCESS_CHALLENGE,
    CLASS,
    FILTER_ID,
    MAX_PACKET,
    NAS_IDENTIFIER,
    USER_NAME,
    USER_PASSWORD,
    RadiusPacketError,
    Reply,
    decode_reply,
    encode_request,
    hide_password,
    vendor_values,
)
from meterd.directory.radius_config import RadiusServer, RadiusSettings, radius_settings

__all__ = ["RadiusBackend", "RadiusServer", "RadiusSettings", "radius_settings"]

log = logging.getLogger(__name__)
#: Discarded replies logged per server and login; the rest are only counted (a flood must not fill the log).
MAX_LOGGED_DISCARDS = 3


@dataclass(slots=True)
class _Attempt:
    """What one server did during a login, for the unreachable message."""

    server: RadiusServer
    sent: int = 0
    discarded: int = 0
    last_reason: str = ""
    error: str = ""

    def discard(self, reason: str) -> None:
        self.discarded += 1
        self.last_reason = reason
        if self.discarded <= MAX_LOGGED_DISCARDS:
            log.warning("radius %s: reply discarded: %s", self.server.uri, reason)

    def describe(self) -> str:
        if self.error:
            return f"{self.server.uri}: {self.error}"
        text = f"{self.server.uri}: no valid reply to {self.sent} Access-Request(s)"
        if self.discarded:
            text += f" ({self.discarded} reply(ies) discarded, last: {self.last_reason})"
        return text


class RadiusBackend:
    """Authenticates users against RADIUS servers; see the module docstring.

    Attributes:
        name: ``"radius"``.
    """

    name = "radius"

    def __init__(self, settings: RadiusSettings) -> None:
        self.settings = settings

    def authenticate(self, user: str, password: str, deadline: float) -> DirectoryIdentity:
        """Ask the servers in order; return the identity of an accepted user.

        Raises:
            DirectoryRefused: A server answered Access-Reject (or Access-Challenge),
                or the name or password cannot be sent over RADIUS.
            DirectoryUnreachable: No server gave a valid answer before ``deadline``.
        """
        raw_user, raw_password = user.encode(), password.encode()
        if not 1 <= len(raw_user) <= 253 or not 1 <= len(raw_password) <= 128:
            raise DirectoryRefused(
                "the user name (1-253 octets) or password (1-128 octets) cannot be sent over RADIUS",
                step="request",
            )
        servers = self.settings.servers
        attempts = [_Attempt(server) for server in servers]
        for index, attempt in enumerate(attempts):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            budget = min(self.settings.timeout * (self.settings.retries + 1), left / (len(servers) - index))
            reply = self._ask(attempt, raw_user, raw_password, time.monotonic() + budget)
            if reply is not None:
                return self._identity(user, attempt.server, reply)
        tried = "; ".join(a.describe() for a in attempts if a.sent or a.error) or "no server tried"
        raise DirectoryUnreachable(
            f"RADIUS: no server answered before the login deadline ({tried})",
            server=",".join(s.uri for s in servers),
            step="access-request",
        )

    def _ask(self, attempt: _Attempt, user: bytes, password: bytes, until: float) -> Reply | None:
        """Send the request to one server (with retransmissions) until ``until``; None if no valid reply."""
        server, settings = attempt.server, self.settings
        identifier, authenticator = secrets.randbelow(256), secrets.token_bytes(16)
        packet = encode_request(
            identifier,
            authenticator,
            settings.secret,
            (
                (USER_NAME, user),
                (USER_PASSWORD, hide_password(password, settings.secret, authenticator)),
                (NAS_IDENTIFIER, settings.nas_identifier.encode()),
            ),
        )
        family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as e:
            attempt.error = f"cannot open a UDP socket: {e.strerror}"
            return None
        with sock:
            for _ in range(settings.retries + 1):
                now = time.monotonic()
                if now >= until:
                    break
                try:
                    sock.sendto(packet, (server.host, server.port))
                except OSError as e:
                    attempt.error = f"cannot send: {e.strerror}"
                    log.warning("radius %s: cannot send: %s", server.uri, e.strerror)
                    return None
                attempt.sent += 1
                reply = self._receive(
                    attempt, sock, identifier, authenticator, min(until, now + settings.timeout)
                )
                if reply is not None:
                    return reply
        return None

    def _receive(
        self, attempt: _Attempt, sock: socket.socket, identifier: int, authenticator: bytes, until: float
    ) -> Reply | None:
        """Wait for a valid reply until ``until``, discarding (and logging) everything else."""
        server = attempt.server
        while (left := until - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, source = sock.recvfrom(MAX_PACKET + 1)
            except TimeoutError:
                return None
            except OSError as e:
                # An ICMP port unreachable from an earlier send: the next retransmission may still land.
                attempt.discard(f"receive failed: {e.strerror}")
                continue
            try:
                if (source[0], source[1]) != (server.host, server.port):
                    raise RadiusPacketError(f"came from {source[0]} port {source[1]}, not the server")
                return decode_reply(data, identifier, authenticator, self.settings.secret)
            except RadiusPacketError as e:
                attempt.discard(str(e))
        return None

    def _identity(self, user: str, server: RadiusServer, reply: Reply) -> DirectoryIdentity:
        settings = self.settings
        if reply.code == ACCESS_CHALLENGE:
            raise DirectoryRefused(
                f"RADIUS {server.uri} answered Access-Challenge, which meterd does not answer",
                server=server.uri,
                step="access-request",
            )
        if reply.code != ACCESS_ACCEPT:
            raise DirectoryRefused(
                f"RADIUS {server.uri} answered Access-Reject", server=server.uri, step="access-request"
            )
        try:
            roles = vendor_values(reply.attributes, settings.vendor_id, settings.role_attribute)
            scopes = vendor_values(reply.attributes, settings.vendor_id, settings.scope_attribute)
        except RadiusPacketError as e:
            raise DirectoryRefused(
                f"RADIUS {server.uri}: unreadable vendor attribute: {e}", server=server.uri, step="attributes"
            ) from e
        group_kind = CLASS if settings.group_attribute == "class" else FILTER_ID
        return DirectoryIdentity(
            name=user,
            groups=frozenset(_texts(server, "group", reply.values(group_kind))),
            roles=frozenset(_texts(server, "role", roles)),
            scope=_scope(server, scopes),
            backend=self.name,
            server=server.uri,
        )


def _texts(server: RadiusServer, what: str, values: list[bytes]) -> list[str]:
    """Decode UTF-8 values; one that is not is dropped (a group or role less only narrows)."""
    out: list[str] = []
    for value in values:
        try:
            out.append(value.decode())
        except UnicodeDecodeError:
            log.warning("radius %s: a %s value that is not UTF-8 was ignored", server.uri, what)
    return out


def _scope(server: RadiusServer, values: list[bytes]) -> str | None:
    """The one scope the reply names; dropping an unreadable one would widen access, so refuse."""
    if not values:
        return None
    try:
        texts = {value.decode() for value in values}
    except UnicodeDecodeError as e:
        raise DirectoryRefused(
            f"RADIUS {server.uri}: the scope attribute is not UTF-8", server=server.uri, step="attributes"
        ) from e
    if len(texts) != 1:
        raise DirectoryRefused(
            f"RADIUS {server.uri}: the reply names {len(texts)} different scopes",
            server=server.uri,
            step="attributes",
        )
    return texts.pop()
