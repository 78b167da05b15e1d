"""The HTTP endpoint: what it answers, what it refuses, and that it stops and bounds its clients."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
from collections.abc import Awaitable, Callable

import pytest

from meterd.errors import ChannelError
from meterd.metrics import MeterdMetrics, MetricsConfig, MetricsServer
from tests.metrics.helpers import TEST_CONFIG, fetch

Scenario = Callable[[MetricsServer], Awaitable[None]]


def serve(scenario: Scenario, *, max_connections: int = 4, timeout: float = 5.0) -> None:
    async def run() -> None:
        server = MetricsServer(TEST_CONFIG, MeterdMetrics(), max_connections=max_connections, timeout=timeout)
        await server.start()
        try:
            await scenario(server)
        finally:
            await server.stop()

    asyncio.run(run())


async def raw(server: MetricsServer, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    return answer


def url(server: MetricsServer, path: str = "/metrics") -> str:
    host, port = server.address
    return f"http://{host}:{port}{path}"


def test_it_listens_on_the_configured_loopback_address() -> None:
    async def scenario(server: MetricsServer) -> None:
        assert server.name == "metrics"
        assert server.address[0] == "127.0.0.1"
        assert server.address[1] > 0

    serve(scenario)


def test_text_format_by_default_and_openmetrics_on_request() -> None:
    async def scenario(server: MetricsServer) -> None:
        status, kind, body = await asyncio.to_thread(fetch, url(server))
        assert status == 200
        assert kind.startswith("text/plain")
        assert b"# TYPE meterd_decisions_total counter" in body
        status, kind, body = await asyncio.to_thread(
            fetch, url(server), "application/openmetrics-text; version=1.0.0"
        )
        assert kind.startswith("application/openmetrics-text")
        assert body.endswith(b"# EOF\n")

    serve(scenario)


def test_head_has_no_body_and_the_root_path_works() -> None:
    async def scenario(server: MetricsServer) -> None:
        answer = await raw(server, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"Content-Length: 0" not in head
        assert body == b""

    serve(scenario)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /admin HTTP/1.1\r\n\r\n", b"404 Not Found"),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"405 Method Not Allowed"),
        (b"GET /metrics\r\n\r\n", b"400 Bad Request"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"400 Bad Request"),
    ],
)
def test_refusals(request_bytes: bytes, status: bytes) -> None:
    async def scenario(server: MetricsServer) -> None:
        answer = await raw(server, request_bytes)
        assert answer.startswith(b"HTTP/1.1 " + status)

    serve(scenario)


def test_an_oversized_request_is_dropped_unanswered() -> None:
    async def scenario(server: MetricsServer) -> None:
        answer = await raw(server, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n")
        assert answer == b""

    serve(scenario)


def test_a_silent_client_is_dropped_after_the_timeout() -> None:
    async def scenario(server: MetricsServer) -> None:
        reader, writer = await asyncio.open_connection(*server.address)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server, not by wait_for
        writer.close()

    serve(scenario, timeout=0.2)


def test_connections_beyond_the_limit_are_closed_and_others_still_served() -> None:
    async def scenario(server: MetricsServer) -> None:
        idle = [await asyncio.open_connection(*server.address) for _ in range(2)]
        await asyncio.sleep(0.05)
        extra_reader, extra_writer = await asyncio.open_connection(*server.address)
        assert await asyncio.wait_for(extra_reader.read(), 5) == b""  # over the limit: closed at once
        extra_writer.close()
        for _, writer in idle:
            writer.close()
        await asyncio.sleep(0.05)
        status, _, _ = await asyncio.to_thread(fetch, url(server))
        assert status == 200

    serve(scenario, max_connections=2)


def test_stop_closes_the_port_and_is_idempotent() -> None:
    async def run() -> None:
        server = MetricsServer(TEST_CONFIG, MeterdMetrics())
        await server.start()
        host, port = server.address
        idle = await asyncio.open_connection(host, port)  # a connection in progress does not hold stop up
        await asyncio.wait_for(server.stop(), 5)
        await server.stop()
        with pytest.raises(RuntimeError):
            _ = server.address
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            await asyncio.to_thread(fetch, f"http://{host}:{port}/metrics")
        idle[1].close()

    asyncio.run(run())


def test_a_busy_port_is_a_channel_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def run() -> None:
            server = MetricsServer(MetricsConfig(listen="127.0.0.1", port=port), MeterdMetrics())
            with pytest.raises(
                ChannelError, match=r"cannot listen on 127\.0\.0\.1:\d+: (?i:address already in use)"
            ):
                await server.start()

        asyncio.run(run())


def test_a_failing_collector_closes_that_scrape_only(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def describe(self) -> list[object]:
            return []

        def collect(self) -> list[object]:
            raise RuntimeError("collector broke")

    async def run() -> None:
        metrics = MeterdMetrics()
        broken = Broken()
        metrics.registry.register(broken)  # type: ignore[arg-type]
        server = MetricsServer(TEST_CONFIG, metrics)
        await server.start()
        try:
            assert await raw(server, b"GET /metrics HTTP/1.1\r\n\r\n") == b""
            metrics.registry.unregister(broken)  # type: ignore[arg-type]
            status, _, _ = await asyncio.to_thread(fetch, url(server))
            assert status == 200
        finally:
            await server.stop()

    asyncio.run(run())
    assert "metrics scrape failed" in caplog.text
