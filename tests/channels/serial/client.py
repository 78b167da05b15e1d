"""The far end of the console line: pyserial on the pty the daemon created, or a raw pty master."""

from __future__ import annotations

import asyncio
import os
import re
import select
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import serial

from meterd.channels.serial import SerialConfig, SerialListener

from ..panel.support import PASSWORD, Env

TIMEOUT = 10.0


class Line:
    """What a person at the terminal sees and types; reads run in a thread, never on the loop."""

    def __init__(self, port: serial.Serial | None = None, fd: int = -1) -> None:
        self.port = port
        self.fd = fd
        self.seen = b""  # everything received, for echo checks
        self.pos = 0  # where the next expect starts looking

    @classmethod
    def open(cls, path: Path | str) -> Line:
        return cls(serial.Serial(str(path), 115200, timeout=0.05))

    def _read(self) -> bytes:
        if self.port is not None:
            return bytes(self.port.read(4096))
        readable, _, _ = select.select([self.fd], [], [], 0.05)
        if not readable:
            return b""
        try:
            return os.read(self.fd, 4096)
        except OSError:
            return b""

    async def expect(self, pattern: str, timeout: float = TIMEOUT) -> bytes:
        """Read until ``pattern`` (a regex) appears after the last match; return the text up to its end."""
        deadline = time.monotonic() + timeout
        wanted = re.compile(pattern.encode())
        while (match := wanted.search(self.seen, self.pos)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not seen; got {self.seen[self.pos :]!r}")
            self.seen += await asyncio.to_thread(self._read)
        got, self.pos = self.seen[self.pos : match.end()], match.end()
        return got

    async def quiet(self, seconds: float) -> bytes:
        """Collect whatever arrives in ``seconds``; the next expect looks only at what follows."""
        start = self.pos
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.seen += await asyncio.to_thread(self._read)
        self.pos = len(self.seen)
        return self.seen[start:]

    async def send(self, data: bytes | str) -> None:
        """Type ``data``; written from a thread, since a full line buffer blocks until the daemon reads."""
        await asyncio.to_thread(self._write, data.encode() if isinstance(data, str) else data)

    def _write(self, raw: bytes) -> None:
        if self.port is not None:
            self.port.write(raw)
            self.port.flush()
        else:
            os.write(self.fd, raw)

    async def login(self, user: str, password: str = PASSWORD) -> bytes:
        await self.expect("login: ")
        await self.send(user + "\r")
        await self.expect("Password: ")
        await self.send(password + "\r")
        return await self.expect(r"meter> |Login incorrect[^\n]*\n|Permission denied[^\n]*\n")

    def close(self) -> None:
        if self.port is not None:
            self.port.close()
        elif self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@asynccontextmanager
async def running(env: Env, config: SerialConfig | None = None) -> AsyncIterator[SerialListener]:
    config = config or SerialConfig(reconnect_interval=0.05, failure_delay=0, login_timeout=30)
    listener = SerialListener(config, env.runtime)
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()


async def eventually(probe: Callable[[], object], timeout: float = TIMEOUT) -> None:
    """Poll until ``probe()`` is true (records are written by the daemon's tasks)."""
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "record did not appear"
        await asyncio.sleep(0.05)
