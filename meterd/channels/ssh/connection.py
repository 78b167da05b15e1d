"""One SSH connection: authentication through the guard, its start-up, refusals.

Invariants:
    * Every login question goes to the guard: passwords to
      :meth:`~meterd.guard.Guard.authenticate`; public keys are first checked
      side-effect free (the client has not yet proved it holds the key) and a
      refused key is recorded through ``authenticate``.  No other method is
      offered (the listener turns GSSAPI off).
    * A shell or command needs ``terminal_access`` (a guard session on the
      ``ssh`` channel); the ``sftp`` subsystem needs ``fs_read_only``,
      ``fs_read_write``, ``certificate_management`` or
      ``firmware_management`` (a session on the ``sftp`` channel).  Each
      session channel is one guard session, closed when the channel ends
      (opened and run by :mod:`~meterd.channels.ssh.sessions`).
    * No port forwarding (TCP or Unix, either direction), no agent or X11
      forwarding, no other subsystem, no legacy SCP; every refused forwarding
      request, agent and X11 included, is recorded.
    * A client gets ``max_auth_tries`` attempts per connection, then is
      disconnected.
    * A connection is in its start-up from accept until its first session
      opens, and again once its last session has closed: at most
      ``max_startups_per_source`` from one source (an IPv4 address, an IPv6
      /64); one more is closed at accept, before any key exchange, and recorded
      within the budget of unauthenticated refusals.  Past ``max_startups`` in
      all, a newcomer takes the slot of the busiest source's oldest start-up,
      which is closed (see startup.py): a flood cannot keep other sources out.
      Authenticating does not end the start-up, so a valid key cannot hold
      unbounded connections either.
    * An authenticated connection with no session open is closed after
      ``no_session_timeout``.  If it never asked for a session, its end (that
      close, or the client's) is the one record of its login
      (``login_failure``, ``no_session``): who authenticated, from where, and
      that nothing followed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, AnyStr

import asyncssh

from meterd.channels.ssh.acks import PromptAcks
from meterd.channels.ssh.startup import SessionWatch
from meterd.guard import Password, PublicKey
from meterd.policy.model import ANONYMOUS
from meterd.policy.request import Channel

if TYPE_CHECKING:
    from asyncssh.connection import SSHConnection

    from meterd.channels.ssh.listener import SshListener

log = logging.getLogger(__name__)


def source_of(conn: SSHConnection) -> str:
    """Return ``host:port`` of the peer."""
    peer = conn.get_extra_info("peername") or ("", 0)
    return f"{peer[0]}:{peer[1]}"


#: Forwarding requests and other probes refused on one connection before it is closed.
MAX_REFUSALS = 16


class MeterSSHServer(asyncssh.SSHServer):
    """The per-connection handler asyncssh calls for authentication and channel requests.

    Args:
        listener: The listener this connection belongs to.
    """

    def __init__(self, listener: SshListener) -> None:
        self._listener = listener
        self._guard = listener.runtime.guard
        self._conn: asyncssh.SSHServerConnection | None = None
        self._registered: asyncssh.SSHServerConnection | None = None  # in the listener's set
        self.source = ""
        self._failures = 0
        self._refusals = 0
        self._acks: PromptAcks | None = None
        self._user: str | None = None  # who authenticated, once someone has
        self._login_recorded = False
        #: The start-up slot and the no-session timer (see startup.py).
        self.watch = SessionWatch(
            listener.startups, listener.config.no_session_timeout, self._no_session, self._crowded
        )

    # -- connection ---------------------------------------------------------

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        """Remember the connection and its peer; route agent and X11 requests to the refusals.

        asyncssh has no :class:`~asyncssh.SSHServer` callback for agent or X11 forwarding: a
        session channel asks its connection (``create_agent_listener``,
        ``attach_x11_listener``), which refuses without telling this server when the listener
        disabled them.  Replacing the two on this connection makes every such request refused
        *and recorded*.  The replacements never grant and never call asyncssh's originals, so
        forwarding stays refused whatever options the listener passes.

        Args:
            conn: The new connection.
        """
        self._conn = conn
        self.source = source_of(conn)
        address = str((conn.get_extra_info("peername") or ("",))[0])
        if not self.watch.admit(address):
            # Closed before asyncssh sends its version: no key exchange, no login timer.
            self._conn = None
            conn.abort()
            self._spawn(self._guard.refuse_connection(Channel.SSH, self.source, "too_many_startups"))
            return
        self._registered = conn
        self._listener.connections.add(conn)
        # Instance attributes, so only this connection is affected.  mypy still checks the
        # signatures against asyncssh's, and reports it if a method is renamed or removed.
        conn.create_agent_listener = self._agent_requested  # type: ignore[method-assign]
        conn.attach_x11_listener = self._x11_requested  # type: ignore[method-assign]
        # The OpenSSH client's Nagle algorithm would wait on our delayed ACKs (see acks.py).
        self._acks = PromptAcks(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        """Give the start-up slot back; each session's channel closes its own guard session.

        An authenticated connection that never asked for a session gets its login's record now.
        """
        if self._registered is not None:
            self._listener.connections.discard(self._registered)
            self._registered = None
        self._conn = None
        self.watch.lost()
        self._record_no_session("disconnected")

    def auth_completed(self) -> None:
        """Authentication is over: acknowledgements may be delayed again (see acks.py).

        The connection now has ``no_session_timeout`` to open a session.
        """
        if self._acks is not None:
            self._acks.stop()
        if self._conn is not None:
            self._user = str(self._conn.get_extra_info("username", ""))
        self.watch.authenticated()

    # -- sessions of this connection --------------------------------------------

    def _no_session(self) -> None:
        """Close a connection that has held no session for ``no_session_timeout``."""
        if self._conn is not None:
            seconds = self._listener.config.no_session_timeout
            self._record_no_session("timeout")
            self._conn.disconnect(asyncssh.DISC_BY_APPLICATION, f"no session open for {seconds} s")

    def _crowded(self) -> None:
        """Close a connection whose start-up slot went to a newer one (or that found none free again)."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        if self._user is not None:
            self._record_no_session("crowded_out")
        elif not self._login_recorded:
            detail: dict[str, str | int] = {"reason": "startup_crowded_out"}
            self._spawn(
                self._guard.refuse(ANONYMOUS, Channel.SSH, self.source, detail, kind="login", budgeted=True)
            )
        conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, "too many connections starting up")

    def _record_no_session(self, ended: str) -> None:
        """Record an authentication that no session request followed: once, as that login's record."""
        if self._user is None or self._login_recorded:
            return
        self._login_recorded = True
        detail: dict[str, str | int] = {"reason": "no_session", "ended": ended}
        self._spawn(self._guard.refuse(self._user, Channel.SSH, self.source, detail, kind="login"))

    def login_recorded(self) -> None:
        """A session request of this connection was decided, and so recorded, by the guard."""
        self._login_recorded = True

    # -- authentication -------------------------------------------------------

    def begin_auth(self, username: str) -> bool:
        """Every user must authenticate."""
        return True

    def password_auth_supported(self) -> bool:
        """Passwords are accepted (kbd-interactive maps onto them)."""
        return True

    def public_key_auth_supported(self) -> bool:
        """OpenSSH authorized-key lines in the policy are accepted."""
        return True

    def _failed(self) -> None:
        self._failures += 1
        if self._failures >= self._listener.config.max_auth_tries:
            raise asyncssh.DisconnectError(
                asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "too many authentication failures"
            )

    async def validate_password(self, username: str, password: str) -> bool:
        """Check a password with the guard (lockout, equal cost for unknown users)."""
        ok = await self._guard.authenticate(Channel.SSH, self.source, username, Password(password))
        if not ok:
            self._failed()
        return ok

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        """Accept a listed key; asyncssh then checks the signature before login succeeds."""
        credential = PublicKey(key.get_algorithm(), base64.b64encode(key.public_data).decode())
        if self._guard.key_acceptable(Channel.SSH, username, credential):
            return True
        await self._guard.authenticate(Channel.SSH, self.source, username, credential)
        self._failed()
        return False

    # -- refusals ---------------------------------------------------------------

    def _refuse(self, what: str, detail: dict[str, str | int]) -> None:
        """Record a refused forwarding or probe; a connection that keeps probing is closed.

        The refusals are budgeted like those of unauthenticated parties (a probe
        needs no session), so a client cannot fill the log with them.
        """
        user = self._conn.get_extra_info("username", "") if self._conn else ""
        self._refusals += 1
        if self._refusals > MAX_REFUSALS:
            if self._refusals == MAX_REFUSALS + 1 and self._conn is not None:
                self._conn.close()
            return
        record = self._guard.refuse(
            user or ANONYMOUS, Channel.SSH, self.source, {"refused": what, **detail}, budgeted=True
        )
        self._spawn(record)

    def _spawn(self, coro: Awaitable[object]) -> None:
        async def run() -> None:
            await coro

        # Held by the listener, which waits for them when it stops: a record spawned as a
        # connection ends (its no-session login, a refusal) lands before the log closes.
        task = asyncio.ensure_future(run())
        records = self._listener.records
        records.add(task)
        task.add_done_callback(records.discard)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        """Refuse local port forwarding (``ssh -L``, ``-D``)."""
        self._refuse("port_forwarding", {"dest_host": dest_host[:64], "dest_port": dest_port})
        return False

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        """Refuse remote port forwarding (``ssh -R``)."""
        self._refuse("remote_forwarding", {"listen_host": listen_host[:64], "listen_port": listen_port})
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        """Refuse Unix socket forwarding."""
        self._refuse("unix_forwarding", {"path": dest_path[:128]})
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        """Refuse remote Unix socket forwarding."""
        self._refuse("unix_forwarding", {"path": listen_path[:128]})
        return False

    def tun_requested(self, unit: int | None) -> bool:
        """Refuse tunnel devices."""
        self._refuse("tun_forwarding", {})
        return False

    def tap_requested(self, unit: int | None) -> bool:
        """Refuse tap devices."""
        self._refuse("tap_forwarding", {})
        return False

    async def _agent_requested(self) -> bool:
        """Refuse agent forwarding (``ssh -A``) in place of the connection's agent listener.

        Returns:
            False: asyncssh then answers the ``auth-agent-req@openssh.com`` request with a failure.
        """
        self._refuse("agent_forwarding", {})
        return False

    async def _x11_requested(
        self, chan: asyncssh.SSHServerChannel[AnyStr], auth_proto: bytes, auth_data: bytes, screen: int
    ) -> str | None:
        """Refuse X11 forwarding (``ssh -X``, ``-Y``) in place of the connection's X11 listener.

        Args:
            chan: The session channel that asked.
            auth_proto: The X11 authentication protocol the client named.
            auth_data: The client's X11 authentication cookie; a secret, so never recorded.
            screen: The X11 screen number.

        Returns:
            None (no display): asyncssh then answers the ``x11-req`` request with a failure.
        """
        self._refuse(
            "x11_forwarding",
            {"auth_proto": auth_proto[:64].decode("ascii", "replace"), "screen": screen},
        )
        return None
