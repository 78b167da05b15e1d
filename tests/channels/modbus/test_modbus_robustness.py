"""Malformed frames, half-open and idle connections, connection floods and fast clients, over raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable

from meterd.channels.modbus import ModbusListener
from meterd.channels.modbus.limits import ConnectionLimits
from meterd.seclog import EventType

from .conftest import Env, client_context, serving, tcp_client, tls_client


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


def adu(
    pdu: bytes, *, unit: int = 1, transaction: int = 7, protocol: int = 0, length: int | None = None
) -> bytes:
    return struct.pack(">HHHB", transaction, protocol, len(pdu) + 1 if length is None else length, unit) + pdu


class Raw:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def ask(self, frame: bytes) -> bytes:
        """Send a frame and return the response PDU (empty if the server closed the connection)."""
        self.writer.write(frame)
        await self.writer.drain()
        header = await asyncio.wait_for(self.reader.read(7), 3)
        if not header:
            return b""
        (length,) = struct.unpack(">H", header[4:6])
        return await asyncio.wait_for(self.reader.readexactly(length - 1), 3)

    async def closed_within(self, seconds: float) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(1), seconds) == b""
        except (TimeoutError, ConnectionError):
            return False


@contextlib.asynccontextmanager
async def raw(listener: ModbusListener, port: str = "tcp", source: str = "127.0.0.1") -> AsyncIterator[Raw]:
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.ports[port], local_addr=(source, 0))
    try:
        yield Raw(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def handshakes(listener: ModbusListener) -> ConnectionLimits:
    limits = listener.pools["tls"].handshakes
    assert limits is not None
    return limits


async def wait_for_handshakes(listener: ModbusListener, count: int) -> None:
    for _ in range(100):
        if handshakes(listener).open == count:
            return
        await asyncio.sleep(0.02)
    assert handshakes(listener).open == count


def test_malformed_pdus_get_the_right_exception_and_the_connection_survives(env: Env) -> None:
    cases = [
        (adu(b"\x03\x00\x16\x00\x0a"), b"\x03\x14"),  # the good one: 20 bytes follow
        (adu(b"\x03\x00\x16\x00\x0a\x00"), b"\x83\x03"),  # one byte too many
        (adu(b"\x03\x00\x16"), b"\x83\x03"),  # too short
        (adu(b"\x03\x00\x00\x00\x00"), b"\x83\x03"),  # zero registers
        (adu(b"\x03\x00\x00\x00\x7e"), b"\x83\x03"),  # 126 registers
        (adu(b"\x04\x00\x00\xff\xff"), b"\x84\x03"),  # a huge count
        (adu(b"\x03\x00\x3c\x00\x01"), b"\x83\x02"),  # unmapped
        (adu(b"\x03\x00\x32\x00\x04"), b"\x83\x02"),  # runs off the end of the measurements
        (adu(b"\x03\xff\xff\x00\x7d"), b"\x83\x02"),  # past the address space
        (adu(b"\x01\x00\x00\x00\x01"), b"\x81\x01"),  # coils: not served
        (adu(b"\x2b\x0e\x01\x00"), b"\xab\x01"),  # device identification: not served
        (adu(b"\x10\x00\x78\x00\x02\x03\x00\x00\x00"), b"\x90\x03"),  # byte count disagrees
        (adu(b"\x10\x00\x78\x00\x02\x04\x00\x00"), b"\x90\x03"),  # fewer bytes than the byte count
        (adu(b"\x06\x00\x6e\x00"), b"\x86\x03"),  # short write
        (adu(b"\x03\x00\x16\x00\x0a", unit=9), b"\x83\x0b"),  # a unit the meter is not
    ]

    async def scenario() -> None:
        async with serving(env) as listener, raw(listener) as conn:
            for frame, expected in cases:
                answer = await conn.ask(frame)
                assert answer[: len(expected)] == expected, (frame.hex(), answer.hex())

    run(scenario())


def test_broken_framing_closes_only_that_connection(env: Env) -> None:
    async def scenario() -> None:
        async with serving(env) as listener, tcp_client(listener) as good:
            for frame in (
                adu(b"\x03\x00\x16\x00\x0a", protocol=1),  # not Modbus
                adu(b"", length=1),  # no function code
                adu(b"\x03" * 10, length=300),  # longer than any PDU
            ):
                async with raw(listener) as bad:
                    assert await bad.ask(frame) == b""
            assert not (await good.read_holding_registers(22, count=10)).isError()

    run(scenario())


def test_half_open_and_idle_connections_are_closed(env: Env) -> None:
    async def scenario() -> None:
        async with serving(env, idle_timeout=0.5, frame_timeout=0.3) as listener:
            async with raw(listener) as slow:
                slow.writer.write(b"\x00\x07\x00")  # a third of a header, then nothing
                start = time.monotonic()
                assert await slow.closed_within(3)
                assert time.monotonic() - start < 2
            async with raw(listener) as idle:
                assert await idle.closed_within(3)
            async with raw(listener, "tls") as tls_silent:  # no TLS handshake: closed after frame_timeout
                assert await tls_silent.closed_within(3)
            await asyncio.sleep(0.1)
            assert listener.counters["idle_timeouts"] >= 1
            assert [pool.connections.open for pool in listener.pools.values()] == [0, 0]

    run(scenario())
    (failure,) = env.records(events=frozenset({EventType.LOGIN_FAILURE}))
    assert failure.detail["reason"] == "tls_timeout"


def test_a_connection_flood_is_cut_off_without_disturbing_an_open_session(env: Env) -> None:
    async def scenario() -> None:
        async with (
            serving(env, max_connections=32, max_connections_per_client=8) as listener,
            tcp_client(listener) as good,
        ):
            flood = [await asyncio.open_connection("127.0.0.1", listener.ports["tcp"]) for _ in range(200)]
            try:
                closed = 0
                for reader, _ in flood:
                    with contextlib.suppress(TimeoutError, ConnectionError):
                        closed += await asyncio.wait_for(reader.read(1), 0.05) == b""
                assert closed >= 200 - 7  # the session already open counts against the same client
                for _ in range(5):
                    assert not (await good.read_holding_registers(22, count=10)).isError()
                assert listener.counters["connections_refused"] >= 193
            finally:
                for _, writer in flood:
                    writer.close()
                for _, writer in flood:
                    with contextlib.suppress(ConnectionError):
                        await writer.wait_closed()
            for _ in range(100):  # the server notices the flood's hang-ups
                if listener.pools["tcp"].connections.open == 1:
                    break
                await asyncio.sleep(0.02)
            async with tcp_client(listener) as later:  # the flood is gone: new clients are welcome again
                assert not (await later.read_holding_registers(22, count=10)).isError()

    run(scenario())


def test_anonymous_clients_filling_plain_tcp_leave_modbus_tls_its_own_slots(env: Env) -> None:
    read = adu(b"\x03\x00\x16\x00\x0a")

    async def scenario() -> None:
        async with (
            serving(env, max_connections=32, max_connections_per_client=8, frame_timeout=10.0) as listener,
            contextlib.AsyncExitStack() as stack,
        ):
            # As many anonymous connections as plain TCP admits, from four addresses (one of
            # them the TLS client's), each shown to be served.
            flood = [
                await stack.enter_async_context(raw(listener, source=f"127.0.0.{1 + i // 8}"))
                for i in range(32)
            ]
            for conn in flood:
                assert (await conn.ask(read))[:2] == b"\x03\x14"
            async with raw(listener, source="127.0.0.5") as surplus:  # plain TCP is full
                assert await surplus.closed_within(2)
            # Unfinished TLS handshakes hold at most one address's share of the handshake
            # budget, and no TLS session slot.
            for _ in range(2):
                await stack.enter_async_context(raw(listener, "tls", source="127.0.0.2"))
            async with raw(listener, "tls", source="127.0.0.2") as third:
                assert await third.closed_within(2)
            async with tls_client(env, listener, "operator") as client:
                assert client.connected
                assert not (await client.read_holding_registers(22, count=10)).isError()
                assert not (await client.write_register(100, 1)).isError()  # demand reset
                assert listener.pools["tcp"].connections.open == 32
                assert listener.pools["tls"].connections.open == 1
                assert handshakes(listener).open == 2

    run(scenario())
    assert env.meter.status().last_peak_reset is not None
    (login,) = env.records(events=frozenset({EventType.LOGIN_SUCCESS}))
    assert (login.principal, login.source.split(":")[0]) == ("scada_ops", "127.0.0.1")


def test_stalled_tls_handshakes_take_no_session_slot_and_leave_sessions_working(env: Env) -> None:
    # Peers that connect to the TLS port and never send a ClientHello, from several
    # addresses: they hold handshake slots (two per address, six in all), never a session slot.
    read = adu(b"\x03\x00\x16\x00\x0a")
    tls = dataclasses.replace(
        env.config().tls,
        max_connections=4,
        max_connections_per_client=2,
        max_handshakes=6,
        max_handshakes_per_client=2,
    )

    async def scenario() -> None:
        async with (
            serving(env, tls=tls, frame_timeout=10.0) as listener,
            contextlib.AsyncExitStack() as stack,
            tls_client(env, listener, "operator") as established,
        ):
            assert established.connected
            for source in ("127.0.0.2", "127.0.0.3"):
                for _ in range(2):
                    await stack.enter_async_context(raw(listener, "tls", source=source))
            await wait_for_handshakes(listener, 4)
            async with raw(listener, "tls", source="127.0.0.2") as third:  # over its address's share
                assert await third.closed_within(2)
            assert not (await established.read_holding_registers(22, count=10)).isError()
            # An address without stalled handshakes, the total not reached: a new client gets in.
            async with tls_client(env, listener, "viewer") as newcomer:
                assert newcomer.connected
                assert not (await newcomer.read_holding_registers(22, count=10)).isError()
                assert listener.pools["tls"].connections.open == 2
            # The rest of the handshake budget, from a third address: now new connections
            # are closed at accept, and the established session is still served.
            for _ in range(2):
                await stack.enter_async_context(raw(listener, "tls", source="127.0.0.4"))
            await wait_for_handshakes(listener, 6)
            async with raw(listener, "tls", source="127.0.0.5") as surplus:
                assert await surplus.closed_within(2)
            for _ in range(3):
                assert not (await established.read_holding_registers(22, count=10)).isError()
            assert listener.pools["tls"].connections.open == 1
            async with raw(listener, "tcp", source="127.0.0.5") as plain:  # plain TCP is apart
                assert (await plain.ask(read))[:2] == b"\x03\x14"

    run(scenario())
    logins = env.records(events=frozenset({EventType.LOGIN_SUCCESS}))
    assert sorted(r.principal for r in logins) == ["scada_ops", "scada_view"]


def test_anonymous_requests_do_not_spend_the_request_rate_of_a_tls_client(env: Env) -> None:
    async def scenario() -> None:
        # One request a second per address, and a wait past idle_timeout hangs up.
        async with (
            serving(env, max_requests_per_second=1, idle_timeout=3.0) as listener,
            contextlib.AsyncExitStack() as stack,
        ):
            for _ in range(8):  # eight seconds of anonymous requests from 127.0.0.1
                conn = await stack.enter_async_context(raw(listener))
                conn.writer.write(adu(b"\x03\x00\x16\x00\x0a"))
            for _ in range(100):
                if listener.counters["throttled"] >= 3:
                    break
                await asyncio.sleep(0.02)
            assert listener.counters["throttled"] >= 3
            async with tls_client(env, listener, "viewer") as client:  # also from 127.0.0.1
                start = time.monotonic()
                assert not (await client.read_holding_registers(22, count=10)).isError()
                assert time.monotonic() - start < 0.5

    run(scenario())


def test_a_stalled_tls_handshake_gives_its_slot_back_after_frame_timeout(env: Env) -> None:
    # A real ClientHello, then silence: the server has answered and waits for the client's
    # certificate and Finished, which never come.
    client_side = client_context(env, "viewer").wrap_bio(
        ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="127.0.0.1"
    )
    with contextlib.suppress(ssl.SSLWantReadError):
        client_side.do_handshake()
    hello = outgoing.read()

    async def scenario() -> None:
        async with serving(env, frame_timeout=0.5) as listener, raw(listener, "tls") as stalled:
            stalled.writer.write(hello)
            assert await asyncio.wait_for(stalled.reader.read(5), 2)  # the server's first flight
            start = time.monotonic()
            while await asyncio.wait_for(stalled.reader.read(4096), 3):
                pass
            assert time.monotonic() - start < 2
            for _ in range(50):
                if handshakes(listener).open == 0:
                    break
                await asyncio.sleep(0.02)
            assert handshakes(listener).open == 0
            assert listener.pools["tls"].connections.open == 0

    run(scenario())
    (failure,) = env.records(events=frozenset({EventType.LOGIN_FAILURE}))
    assert failure.detail["reason"] == "tls_timeout"


def test_request_rate_is_limited_per_client(env: Env) -> None:
    async def scenario() -> None:
        async with serving(env, max_requests_per_second=20) as listener, tcp_client(listener) as client:
            start = time.monotonic()
            for _ in range(40):
                assert not (await client.read_holding_registers(22, count=10)).isError()
            elapsed = time.monotonic() - start
            assert 0.8 < elapsed < 5  # 20 at once, then 20 more at 20 per second
            assert listener.counters["throttled"] >= 15

    run(scenario())


def test_random_pdus_are_each_answered_and_harm_no_one(env: Env) -> None:
    rng = random.Random(802)
    functions = [1, 2, 3, 4, 5, 6, 15, 16, 22, 23, 43, 0x7F, 0x80, 0xFF]

    async def scenario() -> None:
        async with serving(env) as listener, raw(listener) as conn, tcp_client(listener) as good:
            for transaction in range(300):
                body = bytes([rng.choice(functions)]) + rng.randbytes(rng.randrange(0, 12))
                conn.writer.write(adu(body, transaction=transaction))
                header = await asyncio.wait_for(conn.reader.readexactly(7), 3)
                (answered, _, length, _) = struct.unpack(">HHHB", header)
                answer = await asyncio.wait_for(conn.reader.readexactly(length - 1), 3)
                assert answered == transaction
                assert answer[0] in (body[0], (body[0] | 0x80) & 0xFF)
            assert not (await good.read_holding_registers(22, count=10)).isError()
        assert env.meter.test_mode() is False  # nothing random may have been allowed to change the meter

    run(scenario())


def test_failed_tls_handshakes_leave_nothing_behind_and_stop_is_prompt(env: Env) -> None:
    async def scenario() -> None:
        listener = ModbusListener(env.config(), env.runtime)
        await listener.start()
        try:
            for garbage in (b"\x16\x03\x01\x00\x05hello", b"GET / HTTP/1.0\r\n\r\n"):
                async with raw(listener, "tls") as bad:
                    bad.writer.write(garbage)
                    assert await bad.closed_within(3)
            async with raw(listener, "tls"):  # and one still in its handshake when the listener stops
                await wait_for_handshakes(listener, 1)
                start = time.monotonic()
                await listener.stop()
                assert time.monotonic() - start < 1.5  # nothing waited out the grace period
        finally:
            await listener.stop()
        assert handshakes(listener).open == 0
        assert listener.pools["tls"].connections.open == 0

    run(scenario())
    failures = env.records(events=frozenset({EventType.LOGIN_FAILURE}))
    assert [f.detail["reason"] for f in failures][:2] == ["tls_handshake", "tls_handshake"]
