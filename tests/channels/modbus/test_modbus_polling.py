"""The poll loop's path: reads decided once per session, registers encoded once per refresh, frames as they come."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Awaitable

import pytest

from meterd.channels.modbus import values
from meterd.channels.modbus.encoding import Kind, Value, encode
from meterd.channels.modbus.registers import GROUP_FIELDS, Group
from meterd.policy.compile import CompiledPolicy
from meterd.policy.request import Decision, Request
from meterd.seclog import EventType

from .conftest import Env, serving, tcp_client
from .test_modbus_robustness import adu, raw

READ = adu(b"\x03\x00\x16\x00\x0a")


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


def test_a_poll_loop_is_decided_once_encoded_once_and_recorded_in_full(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    decided: list[Request] = []
    encoded: list[str] = []
    decide = CompiledPolicy.decide

    def counting_decide(self: CompiledPolicy, request: Request) -> Decision:
        decided.append(request)
        return decide(self, request)

    def counting_encode(kind: Kind, value: Value, choices: tuple[Value, ...] = ()) -> list[int]:
        encoded.append(kind.label)
        return encode(kind, value, choices)

    monkeypatch.setattr(CompiledPolicy, "decide", counting_decide)
    monkeypatch.setattr(values, "encode", counting_encode)

    async def scenario() -> None:
        async with serving(env) as listener, tcp_client(listener) as client:
            listener.service.measurements.max_age = 3600.0  # one refresh for the whole test
            first = await client.read_holding_registers(22, count=10)
            for _ in range(39):
                again = await client.read_holding_registers(22, count=10)
                assert again.registers == first.registers
            assert [(r.principal, r.resource) for r in decided] == [("anonymous", "/modbus/unit/1")]
            assert len(encoded) == len(GROUP_FIELDS[Group.MEASUREMENT])  # one pass, not one per read
        await env.guard.sweep()

    run(scenario())
    (record,) = env.records(events=frozenset({EventType.ACCESS_DECISION}))
    assert record.detail["aggregated"] == 40


def test_pipelined_and_split_frames_are_answered_in_order(env: Env) -> None:
    async def scenario() -> None:
        async with serving(env, frame_timeout=2.0) as listener, raw(listener) as conn:
            frames = b"".join(
                adu(b"\x03\x00\x16\x00\x0a" if t % 3 else b"\x01\x00\x00\x00\x01", transaction=t)
                for t in range(30)
            )
            conn.writer.write(frames)  # thirty requests in one segment
            for t in range(30):
                head = await asyncio.wait_for(conn.reader.readexactly(7), 3)
                (transaction, _, length, _) = struct.unpack(">HHHB", head)
                body = await asyncio.wait_for(conn.reader.readexactly(length - 1), 3)
                assert transaction == t
                assert body[:2] == (b"\x03\x14" if t % 3 else b"\x81\x01")
            for byte in adu(b"\x03\x00\x16\x00\x0a", transaction=99):  # one byte at a time
                conn.writer.write(bytes((byte,)))
                await conn.writer.drain()
                await asyncio.sleep(0.01)
            head = await asyncio.wait_for(conn.reader.readexactly(7), 3)
            assert struct.unpack(">H", head[:2])[0] == 99
            assert (await conn.reader.readexactly(21))[:2] == b"\x03\x14"

    run(scenario())


def test_a_client_that_does_not_read_its_answers_holds_up_only_itself(env: Env) -> None:
    async def scenario() -> None:
        async with serving(env) as listener, raw(listener) as hog, tcp_client(listener) as good:
            for _ in range(40):  # about 4 MB of answers asked for, none read
                hog.writer.write(READ * 5000)
                await asyncio.sleep(0)
            await asyncio.sleep(0.3)
            start = time.monotonic()
            for _ in range(5):
                assert not (await good.read_holding_registers(22, count=10)).isError()
            assert time.monotonic() - start < 2

    run(scenario())
