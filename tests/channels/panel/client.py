"""A panel client over a real Unix socket, and a running listener for tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from meterd.channels.panel import PanelConfig, PanelListener

from .support import PIN, Env

TIMEOUT = 10.0


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, path: Path) -> Client:
        reader, writer = await asyncio.open_unix_connection(str(path))
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(message).encode() + b"\n")

    async def recv(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        assert line.endswith(b"\n"), f"connection closed: {line!r}"
        answer = json.loads(line)
        assert isinstance(answer, dict)
        return answer

    async def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        await self.send(message)
        return await self.recv()

    async def ask_raw(self, data: bytes) -> dict[str, Any]:
        await self.send_raw(data + b"\n")
        return await self.recv()

    async def login(self, user: str, pin: str = PIN) -> str:
        answer = await self.ask({"op": "login", "user": user, "pin": pin})
        assert answer["ok"], answer
        return str(answer["session"])

    async def action(self, session: str, action: str, **fields: Any) -> dict[str, Any]:
        return await self.ask({"op": "action", "session": session, "action": action, **fields})

    async def closed(self) -> bool:
        """True once the daemon has closed the connection (after reading what is left)."""
        rest = await asyncio.wait_for(self.reader.read(), TIMEOUT)
        del rest
        return self.reader.at_eof()

    async def close(self) -> None:
        self.writer.close()
        with suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


@asynccontextmanager
async def running(env: Env, config: PanelConfig | None = None) -> AsyncIterator[PanelListener]:
    listener = PanelListener(config or PanelConfig(), env.runtime)
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()
