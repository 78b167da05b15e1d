"""LDAP directory login (OpenLDAP and Active Directory) with ldap3.

One login, on the first server that answers: connect, TLS (``ldaps://``) or
StartTLS, bind as the service account, find the user with an escaped filter,
bind as the user, bind as the service account again, read the user's groups.

Invariants:
    * TLS 1.2 or newer, the configured CA only, the server's name checked
      against its certificate (Python's own check, not ldap3's).
    * No step outlives the login's deadline: each socket operation gets at
      most ``operation_timeout`` and never more than the time left, and a
      timer shuts the socket down at the deadline, so even a server that
      trickles bytes cannot hold the thread.
    * An empty password is refused before any server is asked (an LDAP bind
      with an empty password is an unauthenticated bind, which succeeds).
    * A refusal (bad password, unknown or ambiguous user) ends the login:
      the next server is tried only when this one could not be reached.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ldap3 import NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPException,
    LDAPInvalidCredentialsResult,
    LDAPOperationResult,
)
from ldap3.utils.conv import escape_filter_chars

from meterd.directory.backend import DirectoryIdentity, DirectoryRefused, DirectoryUnreachable
from meterd.directory.names import first_cn, login_name_problem, normalise_group
from meterd.directory.settings import LdapSettings
from meterd.errors import ConfigError
from meterd.record import record

#: Active Directory's LDAP_MATCHING_RULE_IN_CHAIN: every group the user is in, nested ones included.
IN_CHAIN = "1.2.840.113556.1.4.1941"
#: Groups one login may return (a user in more is refused rather than half-mapped).
MAX_GROUPS = 1000


def read_password_file(path: Path, key: str = "directory.ldap.bind_password_file") -> str:
    """Read a service-account password from a file only its owner may read.

    Raises:
        ConfigError: The file is missing, readable by others, or empty.
    """
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}", key_path=key) from e
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{path} is readable by others (mode {info.st_mode & 0o777:04o}); chmod 600 it", key_path=key
        )
    password = text.rstrip("\r\n")
    if not password:
        raise ConfigError(f"{path} is empty", key_path=key)
    return password


@record
class _Target:
    uri: str
    host: str
    port: int
    tls: bool  # ldaps://


def _target(uri: str) -> _Target:
    parts = urlsplit(uri)
    tls = parts.scheme.lower() == "ldaps"
    return _Target(uri, parts.hostname or "", parts.port or (636 if tls else 389), tls)


class _VerifiedTls(Tls):
    """ldap3's TLS hook with Python's verification: TLS 1.2+, our CA, the server's name checked."""

    def __init__(self, context: ssl.SSLContext, hostname: str, attempt: _Attempt, step: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self._context = context
        self._hostname = hostname
        self._attempt = attempt
        self._step = step

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        self._attempt.step = self._step
        wrapped = self._context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=self._hostname,
        )
        connection.socket = wrapped
        self._attempt.sock = wrapped


@dataclass(slots=True)
class _Attempt:
    """One server's try: the step under way and the socket the deadline timer shuts."""

    step: str = "connect"
    sock: socket.socket | None = None
    expired: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def expire(self) -> None:
        with self.lock:
            self.expired = True
            sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class LdapBackend:
    """The LDAP :class:`~meterd.directory.backend.DirectoryBackend`.

    Args:
        settings: ``[directory.ldap]``.
        bind_password: The service account's password (see :func:`read_password_file`).

    Raises:
        ConfigError: The CA file cannot be loaded.
    """

    name = "ldap"

    def __init__(self, settings: LdapSettings, bind_password: str) -> None:
        self._settings = settings
        self._bind_password = bind_password
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(settings.ca))
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"cannot load CA {settings.ca}: {e}", key_path="directory.ldap.ca") from e
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        self._context = context
        self._targets = tuple(_target(uri) for uri in settings.servers)

    def authenticate(self, user: str, password: str, deadline: float) -> DirectoryIdentity:
        """See :meth:`DirectoryBackend.authenticate`."""
        problem = login_name_problem(user)
        if problem or not password:
            raise DirectoryRefused(problem or "empty password", step="input")
        failures: list[DirectoryUnreachable] = []
        for target in self._targets:
            if time.monotonic() >= deadline:
                break
            try:
                return self._login(target, user, password, deadline)
            except DirectoryUnreachable as e:
                failures.append(e)
        if not failures:
            first = self._targets[0].uri if self._targets else ""
            raise DirectoryUnreachable(f"{first}: no time left to try", server=first, step="connect")
        if len(failures) == 1:
            raise failures[0]
        tried = "; ".join(str(e) for e in failures)
        raise DirectoryUnreachable(tried, server=failures[-1].server, step=failures[-1].step)

    # -- one server -----------------------------------------------------------

    def _login(self, target: _Target, user: str, password: str, deadline: float) -> DirectoryIdentity:
        attempt = _Attempt()
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), attempt.expire)
        timer.daemon = True
        timer.start()
        conn: Connection | None = None
        try:
            conn = self._connection(target, attempt, deadline)
            self._open(conn, target, attempt, deadline)
            attempt.step = "bind"
            self._bind(conn, self._settings.bind_dn, self._bind_password, deadline)
            attempt.step = "search"
            dn, member_of = self._find_user(conn, user, deadline)
            attempt.step = "user bind"
            try:
                self._bind(conn, dn, password, deadline)
            except LDAPOperationResult as e:
                # Any answer to the user's own bind is the directory's word on this user (a
                # wrong password, a disabled or expired account): refused, never offline.
                why = "wrong password" if isinstance(e, LDAPInvalidCredentialsResult) else e.description
                raise DirectoryRefused(
                    f"{target.uri}: {why} for {user}", server=target.uri, step="user bind"
                ) from e
            attempt.step = "bind"
            self._bind(conn, self._settings.bind_dn, self._bind_password, deadline)
            attempt.step = "groups"
            groups = self._groups(conn, dn, member_of, deadline)
            return DirectoryIdentity(user, groups, frozenset(), None, "ldap", target.uri)
        except DirectoryRefused as e:
            e.server = e.server or target.uri  # the search and group steps know no URI
            raise
        except LDAPOperationResult as e:
            # The server answered, but not with what a login needs (busy, unwilling, no such base).
            raise DirectoryUnreachable(
                f"{target.uri}: {attempt.step} refused by the server: {e.description or e}",
                server=target.uri,
                step=attempt.step,
            ) from e
        except (LDAPException, OSError, ssl.SSLError) as e:
            why = "no answer before the login's deadline" if attempt.expired else _reason(e)
            raise DirectoryUnreachable(
                f"{target.uri}: {attempt.step} failed: {why}", server=target.uri, step=attempt.step
            ) from e
        finally:
            timer.cancel()
            if conn is not None:
                _close(conn)

    def _timeout(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("login deadline passed")
        return min(self._settings.operation_timeout, left)

    def _connection(self, target: _Target, attempt: _Attempt, deadline: float) -> Connection:
        timeout = self._timeout(deadline)
        tls = _VerifiedTls(self._context, target.host, attempt, "tls" if target.tls else "starttls")
        server = Server(
            target.host,
            port=target.port,
            use_ssl=target.tls,
            tls=tls,
            get_info=NONE,
            connect_timeout=timeout,
        )
        return Connection(
            server,
            authentication=SIMPLE,
            # None: ldap3 would pack a float timeout into SO_RCVTIMEO and fail; the socket
            # keeps the connect timeout (TLS handshake included) and each step sets its own.
            receive_timeout=None,
            raise_exceptions=True,
            read_only=True,
            auto_referrals=False,
        )

    def _open(self, conn: Connection, target: _Target, attempt: _Attempt, deadline: float) -> None:
        # Apart from building the connection, so a socket that failed to open is still closed.
        attempt.step = "connect"
        conn.open(read_server_info=False)
        with attempt.lock:
            attempt.sock = conn.socket
            expired = attempt.expired
        if expired:
            raise TimeoutError("login deadline passed")
        if not target.tls:
            self._set_timeout(conn, deadline)
            attempt.step = "starttls"
            conn.start_tls(read_server_info=False)

    def _set_timeout(self, conn: Connection, deadline: float) -> None:
        timeout = self._timeout(deadline)
        if conn.socket is not None:
            conn.socket.settimeout(timeout)

    def _bind(self, conn: Connection, dn: str, password: str, deadline: float) -> None:
        self._set_timeout(conn, deadline)
        conn.rebind(user=dn, password=password, authentication=SIMPLE)

    def _search(
        self, conn: Connection, base: str, query: str, attributes: list[str], deadline: float
    ) -> list[Any]:
        self._set_timeout(conn, deadline)
        limit = max(1, int(deadline - time.monotonic()))
        conn.search(base, query, SUBTREE, attributes=attributes, size_limit=MAX_GROUPS, time_limit=limit)
        return [e for e in conn.response or () if e.get("type") == "searchResEntry"]

    def _find_user(self, conn: Connection, user: str, deadline: float) -> tuple[str, list[str]]:
        settings = self._settings
        escaped = escape_filter_chars(user)
        suffix = settings.upn_suffix
        if suffix and user.casefold().endswith("@" + suffix):
            query = f"(userPrincipalName={escaped})"
        else:
            query = settings.user_filter.replace("{user}", escaped)
        attributes = ["memberOf"] if settings.group_mode == "memberof" else []
        entries = self._search(conn, settings.user_base, query, attributes, deadline)
        if len(entries) != 1:
            why = "no such user" if not entries else "the name matches several entries"
            raise DirectoryRefused(f"{user}: {why}", step="search")
        entry = entries[0]
        member_of = entry.get("attributes", {}).get("memberOf", []) if attributes else []
        return str(entry["dn"]), [str(v) for v in member_of]

    def _groups(self, conn: Connection, dn: str, member_of: list[str], deadline: float) -> frozenset[str]:
        settings = self._settings
        if settings.group_mode == "memberof":
            dns = set(member_of)
        elif settings.group_mode == "ad-in-chain":
            query = f"(member:{IN_CHAIN}:={escape_filter_chars(dn)})"
            dns = {str(e["dn"]) for e in self._search(conn, settings.group_base, query, ["cn"], deadline)}
        else:
            dns = self._member_search(conn, dn, deadline)
        if len(dns) > MAX_GROUPS:
            raise DirectoryRefused(f"{dn} is in more than {MAX_GROUPS} groups", step="groups")
        names = {normalise_group(g) for g in dns}
        names |= {normalise_group(cn) for g in dns if (cn := first_cn(g))}
        return frozenset(names)

    def _member_search(self, conn: Connection, dn: str, deadline: float) -> set[str]:
        """Groups listing ``dn`` as ``member`` or ``uniqueMember``, then their parents, to ``group_depth``."""
        found: set[str] = set()
        frontier = {dn}
        for _ in range(self._settings.group_depth):
            terms = "".join(
                f"(member={escape_filter_chars(d)})(uniqueMember={escape_filter_chars(d)})"
                for d in sorted(frontier)
            )
            entries = self._search(conn, self._settings.group_base, f"(|{terms})", ["cn"], deadline)
            fresh = {str(e["dn"]) for e in entries} - found
            if not fresh:
                break
            found |= fresh
            frontier = fresh
        return found


def _reason(error: BaseException) -> str:
    """A short, secret-free reason for a failed step."""
    cause: BaseException | None = error
    while cause is not None:
        # ldap3 re-raises socket errors as classes deriving from both its own error and the
        # original type, without the original's attributes: read them defensively.
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = getattr(cause, "verify_message", "") or str(cause)
            return f"certificate not accepted: {detail}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {getattr(cause, 'reason', '') or cause}"
        if isinstance(cause, TimeoutError | socket.timeout):
            return "timed out"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    return str(error) or type(error).__name__


def _close(conn: Connection) -> None:
    with contextlib.suppress(OSError):
        if conn.socket is not None:
            conn.socket.close()
    conn.closed = True
