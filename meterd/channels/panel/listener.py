"""The front-panel listener: a Unix stream socket the panel process connects to."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import struct
from pathlib import Path

from meterd.channels.panel.config import PanelConfig
from meterd.channels.panel.connection import PanelConnection
from meterd.channels.panel.protocol import ErrorCode, encode, failure
from meterd.errors import ChannelError
from meterd.runtime import Runtime

log = logging.getLogger(__name__)

STOP_TIMEOUT = 5.0
_UCRED = struct.Struct("3i")


def peer_source(sock: socket.socket | None) -> str:
    """Describe the peer of a Unix socket by its credentials, for the log."""
    if sock is None:
        return "panel"
    try:
        pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except (OSError, AttributeError, struct.error):
        return "panel"
    return f"uid={uid} pid={pid}"


def _bind(path: Path, mode: int) -> socket.socket:
    """Bind the socket and set its mode before it listens, so no one connects under a laxer mode."""
    try:
        existing = path.lstat()
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if not stat.S_ISSOCK(existing.st_mode):
            raise ChannelError(f"panel socket {path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: left behind by a daemon that did not stop cleanly
        else:
            raise ChannelError(f"panel socket {path} is in use by another process")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sock.bind(str(path))
        os.chmod(path, mode)
        sock.listen(16)
    except OSError as e:
        sock.close()
        raise ChannelError(f"cannot listen on panel socket {path}: {e.strerror}") from e
    sock.setblocking(False)
    return sock


class PanelListener:
    """Serves the front-panel protocol on a Unix socket.

    Args:
        config: The ``[panel]`` settings.
        runtime: The daemon's guard, meter and state directory.
    """

    name = "panel"

    def __init__(self, config: PanelConfig, runtime: Runtime) -> None:
        self._config = config
        self._runtime = runtime
        self.path = config.socket_path(runtime.state_dir)
        self._server: asyncio.AbstractServer | None = None
        self._clients: dict[asyncio.Task[None], PanelConnection] = {}

    async def start(self) -> None:
        """Bind the socket (mode from the configuration) and start accepting.

        Raises:
            ChannelError: The path is taken or cannot be bound.
        """
        sock = _bind(self.path, self._config.mode)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock)
        log.info("front panel listening on %s", self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = peer_source(writer.get_extra_info("socket"))
        task = asyncio.current_task()
        if len(self._clients) >= self._config.max_clients or task is None:
            log.warning("panel client %s refused: %d clients connected", source, len(self._clients))
            writer.write(encode(failure(ErrorCode.BUSY, "too many panel clients")))
            writer.close()
            return
        connection = PanelConnection(self._runtime, self._config, reader, writer, source)
        self._clients[task] = connection
        try:
            await connection.run()
        finally:
            del self._clients[task]

    async def stop(self) -> None:
        """Stop accepting, end every client's sessions and remove the socket."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._clients.values()):
            connection.hang_up()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=STOP_TIMEOUT)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), STOP_TIMEOUT)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
