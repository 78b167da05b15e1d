"""The SSH listener: binds, generates or loads the host key, serves shells and SFTP.

The connection code (:mod:`~meterd.channels.ssh.connection`: login, the
session's terminal) loads with the first connection, the shell and SFTP with
their first session: an idle meter holds only the listener.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import asyncssh

from meterd.channels.ssh.config import SshConfig
from meterd.channels.ssh.hostkeys import load_or_create_host_key
from meterd.channels.ssh.startup import StartupSlots
from meterd.errors import ChannelError
from meterd.guard import Session
from meterd.policy.request import Channel
from meterd.runtime import Runtime

if TYPE_CHECKING:
    from meterd.channels.ssh.connection import MeterSSHServer
    from meterd.channels.ssh.sftp import MeterSFTPServer

log = logging.getLogger(__name__)

STOP_TIMEOUT = 3.0


class SshListener:
    """The SSH and SFTP channel as the daemon's supervisor runs it.

    Args:
        config: The ``[ssh]`` settings.
        runtime: The daemon's shared parts.

    Attributes:
        sessions: Open guard sessions of this listener (shell and SFTP).
        startups: Connections that have no session open, in total and per source
            (see :mod:`~meterd.channels.ssh.startup`).
        opening: Sessions being opened now (counted against ``max_sessions``).
        records: Records the listener's connections are writing (awaited at stop).
        connections: Open connections (closed at stop).
        port: The bound port once started (useful when the configured port is 0).
    """

    name = "ssh"

    def __init__(self, config: SshConfig, runtime: Runtime) -> None:
        self.config = config
        self.runtime = runtime
        self.sessions: set[Session] = set()
        self.startups = StartupSlots(config.max_startups, config.max_startups_per_source)
        self.opening = 0
        self.records: set[asyncio.Task[None]] = set()
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self.port = config.port
        self._server: asyncssh.SSHAcceptor | None = None

    async def start(self) -> None:
        """Load or create the host key and start listening.

        Raises:
            ChannelError: The key cannot be made or the address cannot be bound.
        """
        host_keys = self.config.host_key_path(self.runtime.state_dir)
        host_key = await asyncio.to_thread(load_or_create_host_key, host_keys)
        try:
            self._server = await asyncssh.listen(
                self.config.listen,
                self.config.port,
                server_factory=self._server_for_connection,
                server_host_keys=[host_key],
                session_factory=self._session,
                sftp_factory=self._sftp,
                sftp_version=3,
                allow_scp=False,
                agent_forwarding=False,
                x11_forwarding=False,
                login_timeout=self.config.login_grace_time,
                encoding="utf-8",
                kbdint_auth=True,
                # No GSSAPI (Kerberos) key exchange or login: they would authenticate without
                # the guard.  Saying so also spares every login asyncssh's look-up of this
                # host's name (gethostname, then getfqdn: a name-service query that waits for
                # the timeout of an unreachable resolver) when it re-reads its options.
                gss_host=None,
            )
        except OSError as e:
            raise ChannelError(f"cannot listen on {self.config.listen}:{self.config.port}: {e}") from e
        self.port = self._server.get_port()
        log.info("ssh listening on %s:%d", self.config.listen, self.port)

    def _server_for_connection(self) -> MeterSSHServer:
        from meterd.channels.ssh.connection import MeterSSHServer  # noqa: PLC0415 - see module docstring

        return MeterSSHServer(self)

    async def _session(
        self,
        stdin: asyncssh.SSHReader[str],
        stdout: asyncssh.SSHWriter[str],
        stderr: asyncssh.SSHWriter[str],
    ) -> None:
        from meterd.channels.ssh.sessions import run_session  # noqa: PLC0415 - see module docstring
        from meterd.channels.ssh.terminal import SessionStreams  # noqa: PLC0415

        await run_session(self, SessionStreams(stdin, stdout, stderr))

    async def _sftp(self, chan: asyncssh.SSHServerChannel[bytes]) -> MeterSFTPServer:
        # The SFTP server is imported on the first SFTP session: an idle meter does not hold it.
        from meterd.channels.ssh.area import Area  # noqa: PLC0415
        from meterd.channels.ssh.sessions import close_guard_session, open_guard_session  # noqa: PLC0415
        from meterd.channels.ssh.sftp import MeterSFTPServer  # noqa: PLC0415
        from meterd.channels.ssh.sftp_session import SESSION  # noqa: PLC0415

        area = Area(self.runtime.meter.file_area)
        opened = await open_guard_session(self, chan, Channel.SFTP, SESSION, "/files")
        if not isinstance(opened, Session):
            chan.write_stderr(f"denied: {opened.request.permission.value} ({opened.detail})\n".encode())
            chan.exit(1)
            return MeterSFTPServer(chan, area, None, self.runtime)
        return MeterSFTPServer(
            chan, area, opened, self.runtime, lambda: close_guard_session(self, opened, "logged out")
        )

    async def stop(self) -> None:
        """Stop accepting, end every session, and close connections within a few seconds."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        if self.sessions:  # then a connection has loaded the connection code
            from meterd.channels.ssh.sessions import close_guard_session  # noqa: PLC0415

            for session in list(self.sessions):
                await close_guard_session(self, session, "daemon stopping")
        try:
            await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("ssh connections did not close within %s s", STOP_TIMEOUT)
        # Connections with no session (in their start-up, or `ssh -N`) end here too.
        for conn in list(self.connections):
            conn.close()
        deadline = asyncio.get_running_loop().time() + STOP_TIMEOUT
        while self.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        if self.records:
            await asyncio.wait(list(self.records), timeout=STOP_TIMEOUT)
