"""Serving a registry over HTTP from the daemon's event loop.

A few dozen lines of HTTP/1.1 on :func:`asyncio.start_server` rather than
prometheus_client's threaded server: that one starts a thread per connection,
so a flood of connections would spend the daemon's threads (and the unit's
``TasksMax``), while here connections are bounded, each has a deadline, and
nothing runs outside the loop.  Rendering runs on the loop too: even with
every decision series present (about 600 samples) a scrape is under 10 ms of
work per scrape interval, far inside the watchdog's deadline.

Answers: ``GET``/``HEAD`` of ``/metrics`` (or ``/``) in the text format, or
OpenMetrics when the scraper asks for it; 404 for other paths, 405 for other
methods, 400 for anything unparsable; every connection closes after one answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from meterd.errors import ChannelError
from meterd.metrics.config import MetricsConfig
from meterd.metrics.registry import MeterdMetrics

_log = logging.getLogger(__name__)

#: Request line and headers together; a scraper sends a few hundred bytes.
MAX_HEAD_BYTES = 8192
PATHS = ("/metrics", "/")


class MetricsServer:
    """The metrics endpoint; the daemon runs it like a channel's listener.

    Args:
        config: Address and port (``config.enabled`` is the caller's to honour).
        metrics: What to serve.
        max_connections: Connections served at once; more are closed unanswered.
        timeout: Seconds a client has to send its request and take the answer.

    Attributes:
        name: ``"metrics"``, for the daemon's messages.
    """

    def __init__(
        self, config: MetricsConfig, metrics: MeterdMetrics, *, max_connections: int = 4, timeout: float = 5.0
    ) -> None:
        self.name = "metrics"
        self.config = config
        self._registry: CollectorRegistry = metrics.registry
        self._max_connections = max_connections
        self._timeout = timeout
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind and start serving.

        Raises:
            ChannelError: The address cannot be bound (in use, not local, not permitted).
        """
        try:
            self._server = await asyncio.start_server(
                self._handle, self.config.listen, self.config.port, limit=MAX_HEAD_BYTES
            )
        except OSError as e:
            # asyncio's own message repeats the address; the errno's text says it once.
            reason = os.strerror(e.errno) if e.errno else str(e)
            raise ChannelError(f"cannot listen on {self.config.listen}:{self.config.port}: {reason}") from e
        _log.info("metrics on http://%s:%d/metrics", *self.address)

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the port is the kernel's choice when configured as 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the metrics server is not running")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def stop(self) -> None:
        """Stop listening and drop connections in progress; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        try:
            if task is None or len(self._handlers) >= self._max_connections:
                return
            self._handlers.add(task)
            try:
                async with asyncio.timeout(self._timeout):
                    await self._answer(reader, writer)
            except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass  # a slow, vanished or oversized client gets nothing more
            except Exception:  # a failing collector must not take the endpoint (or the loop) down
                _log.exception("metrics scrape failed")
            finally:
                self._handlers.discard(task)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await _send(writer, "400 Bad Request")
            return
        method, target = parts[0], parts[1]
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if method not in ("GET", "HEAD"):
            await _send(writer, "405 Method Not Allowed", extra="Allow: GET, HEAD\r\n")
            return
        if target.partition("?")[0] not in PATHS:
            await _send(writer, "404 Not Found")
            return
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        body = encoder(self._registry)
        await _send(writer, "200 OK", body, content_type, send_body=method == "GET")


async def _send(
    writer: asyncio.StreamWriter,
    status: str,
    body: bytes = b"",
    content_type: str = "text/plain; charset=utf-8",
    *,
    extra: str = "",
    send_body: bool = True,
) -> None:
    if not body and status != "200 OK":
        body = status.encode() + b"\n"
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + (body if send_body else b""))
    await writer.drain()
