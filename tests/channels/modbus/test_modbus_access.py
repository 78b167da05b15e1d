"""End-to-end: who may read and write what, over plain Modbus TCP and Modbus/TCP Security, with pymodbus."""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import Awaitable, Callable, Sequence

from pymodbus.client import AsyncModbusTlsClient
from pymodbus.exceptions import ModbusException

from meterd.guard import Session
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, DenyReason, Outcome
from meterd.seclog import EventType

from .conftest import Env, policy_data, serving, tcp_client, tls_client

VOLTAGES = 22
TEST_MODE_FLAG = 44
DEMAND_RESET = 100
TEST_MODE = 110
CLOCK = 120
PREFIX_LENGTH = 202
SERIAL_PARITY = 210
DEMAND_INTERVAL = 310


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


def f32(words: Sequence[int], i: int) -> float:
    return float(struct.unpack(">f", struct.pack(">HH", words[i], words[i + 1]))[0])


def exception_of(response: object) -> int | None:
    return (
        getattr(response, "exception_code", None) if getattr(response, "isError", lambda: False)() else None
    )


def test_anonymous_reads_measurements_and_is_refused_writes_with_01(env: Env) -> None:
    async def scenario() -> None:
        async with serving(env) as listener, tcp_client(listener) as client:
            rr = await client.read_holding_registers(VOLTAGES, count=10, device_id=1)
            assert not rr.isError()
            assert len(rr.registers) == 10
            assert 100.0 < f32(rr.registers, 0) < 400.0  # phase A voltage
            ir = await client.read_input_registers(0, count=52, device_id=1)
            assert not ir.isError()
            for address, value in ((DEMAND_RESET, 1), (TEST_MODE, 1), (PREFIX_LENGTH, 16)):
                wr = await client.write_register(address, value, device_id=1)
                assert exception_of(wr) == 1, address
            wr = await client.write_registers(CLOCK, [0x6B49, 0xD200], device_id=1)
            assert exception_of(wr) == 1
        assert env.meter.test_mode() is False
        assert env.meter.status().last_peak_reset is None

    run(scenario())
    denied = env.records(events=frozenset({EventType.PERMISSION_DENIED}))
    assert [(r.principal, r.permission) for r in denied] == [
        ("anonymous", "peak_demand_reset"),
        ("anonymous", "test_mode_toggle"),
        ("anonymous", "comm_config"),
        ("anonymous", "time_sync"),
    ]
    assert all(r.channel is Channel.MODBUS and r.resource == "/modbus/unit/1" for r in denied)
    assert denied[0].detail["function"] == 6
    assert denied[0].detail["address"] == DEMAND_RESET
    # No login or logout records for anonymous connections, and reads are not recorded one by one.
    assert not env.records(events=frozenset({EventType.LOGIN_SUCCESS, EventType.LOGOUT_MANUAL}))
    assert not env.records(events=frozenset({EventType.ACCESS_DECISION}), outcomes=frozenset({Outcome.ALLOW}))


def test_reads_are_recorded_in_aggregate_by_the_sweep(env: Env) -> None:
    async def scenario() -> None:
        async with serving(env) as listener, tcp_client(listener) as client:
            for _ in range(25):
                assert not (await client.read_holding_registers(VOLTAGES, count=10)).isError()
        assert not env.records(events=frozenset({EventType.ACCESS_DECISION}))
        await env.guard.sweep()

    run(scenario())
    (record,) = env.records(events=frozenset({EventType.ACCESS_DECISION}))
    assert (record.principal, record.permission, record.resource) == (
        "anonymous",
        "fs_read_only",
        "/modbus/unit/1",
    )
    assert record.detail["aggregated"] == 25


async def _tls_session(env: Env, who: str, body: Callable[[AsyncModbusTlsClient], Awaitable[None]]) -> None:
    async with serving(env) as listener, tls_client(env, listener, who) as client:
        assert client.connected
        await body(client)


def test_viewer_certificate_reads_only(env: Env) -> None:
    async def body(client: AsyncModbusTlsClient) -> None:
        assert not (await client.read_holding_registers(VOLTAGES, count=10)).isError()
        assert exception_of(await client.write_register(TEST_MODE, 1)) == 1
        assert exception_of(await client.write_register(DEMAND_RESET, 1)) == 1

    run(_tls_session(env, "viewer", body))
    logins = env.records(events=frozenset({EventType.LOGIN_SUCCESS}))
    assert [r.principal for r in logins] == ["scada_view"]
    assert [r.principal for r in env.records(events=frozenset({EventType.LOGOUT_MANUAL}))] == ["scada_view"]


def test_operator_certificate_resets_demand_and_nothing_else(env: Env) -> None:
    async def body(client: AsyncModbusTlsClient) -> None:
        assert not (await client.write_register(DEMAND_RESET, 1)).isError()
        assert exception_of(await client.write_register(TEST_MODE, 1)) == 1
        assert exception_of(await client.write_registers(CLOCK, [0x6B49, 0xD200])) == 1
        assert exception_of(await client.write_register(DEMAND_INTERVAL, 30)) == 1

    run(_tls_session(env, "operator", body))
    assert env.meter.status().last_peak_reset is not None
    (reset,) = env.records(events=frozenset({EventType.DEMAND_RESET}))
    assert (reset.principal, reset.outcome, reset.detail["registers"]) == (
        "scada_ops",
        Outcome.ALLOW,
        "demand_reset",
    )


def test_engineer_certificate_configures_but_cannot_reset_demand(env: Env) -> None:
    async def body(client: AsyncModbusTlsClient) -> None:
        assert not (await client.write_register(TEST_MODE, 1)).isError()
        flag = await client.read_holding_registers(TEST_MODE_FLAG, count=1)
        assert flag.registers == [1]
        assert not (await client.write_registers(CLOCK, [0x6B49, 0xD200])).isError()  # 1800000000
        assert not (await client.write_register(PREFIX_LENGTH, 16)).isError()
        assert not (await client.write_register(DEMAND_INTERVAL, 30)).isError()
        assert (await client.read_holding_registers(DEMAND_INTERVAL, count=1)).registers == [30]
        assert exception_of(await client.write_register(DEMAND_RESET, 1)) == 1
        # Shape and value problems are not permission problems.
        assert exception_of(await client.write_register(CLOCK, 1)) == 2  # half of a two-register field
        assert exception_of(await client.write_register(VOLTAGES, 1)) == 2  # a measurement
        assert exception_of(await client.write_register(SERIAL_PARITY, 9)) == 3  # no such parity
        assert exception_of(await client.write_register(PREFIX_LENGTH, 40)) == 3  # the meter refuses it
        assert exception_of(await client.write_register(DEMAND_RESET, 2)) == 3

    run(_tls_session(env, "engineer", body))
    assert env.meter.test_mode() is True
    assert env.meter.comm_settings().prefix_length == 16
    assert env.meter.dss_settings().demand_interval_min == 30
    assert abs(env.meter.clock().meter_time - 1_800_000_000) < 60
    changes = env.records(events=frozenset({EventType.CONFIG_CHANGE}))
    assert [(r.outcome, r.detail.get("change")) for r in changes] == [
        (Outcome.ALLOW, "prefix_length=16"),
        (Outcome.ALLOW, "demand_interval_min=30"),
        (Outcome.ALLOW, "prefix_length=40"),  # the guard allowed it ...
        (Outcome.ERROR, "prefix_length=40"),  # ... and the meter refused the value
    ]
    refused_shapes = env.records(
        events=frozenset({EventType.ACCESS_DECISION}), outcomes=frozenset({Outcome.DENY})
    )
    assert [r.detail["reason"] for r in refused_shapes] == [
        "not_writable",
        "not_writable",
        "bad_value",
        "bad_value",
    ]


def test_certificate_without_role_or_with_a_foreign_role_is_denied_everything(env: Env) -> None:
    for who in ("norole", "wrongrole"):

        async def body(client: AsyncModbusTlsClient) -> None:
            assert exception_of(await client.read_holding_registers(VOLTAGES, count=10)) == 1
            assert exception_of(await client.write_register(TEST_MODE, 1)) == 1

        run(_tls_session(env, who, body))
    denied = env.records(events=frozenset({EventType.PERMISSION_DENIED}))
    assert [(r.principal, r.permission, r.detail["reason"]) for r in denied] == [
        ("misfit", "fs_read_only", "role_limit"),
        ("misfit", "test_mode_toggle", "role_limit"),
    ] * 2
    assert "NULL role" in str(denied[0].detail["why"])
    assert "role 'operator' of this session is not a role of misfit" in str(denied[2].detail["why"])
    assert env.meter.test_mode() is False


async def _refused(env: Env, who: str | None, max_version: ssl.TLSVersion | None = None) -> bool:
    """True if the client cannot get an answer over TLS."""
    async with serving(env) as listener, tls_client(env, listener, who, max_version) as client:
        if not client.connected:
            return True
        try:
            response = await client.read_holding_registers(VOLTAGES, count=10)
        except ModbusException:
            return True
        return bool(response.isError()) and exception_of(response) is None


def test_expired_foreign_missing_and_unlisted_certificates_are_refused(env: Env) -> None:
    for who in ("expired", "otherca", None, "unlisted"):
        assert asyncio.run(asyncio.wait_for(_refused(env, who), 30)), who
    failures = env.records(events=frozenset({EventType.LOGIN_FAILURE}))
    reasons = [r.detail["reason"] for r in failures]
    assert reasons == ["tls_handshake", "tls_handshake", "tls_handshake", "bad_credentials"]
    assert "expired" in str(failures[0].detail["error"])
    assert failures[3].principal == "stranger"  # the unlisted certificate's common name
    assert not env.records(events=frozenset({EventType.LOGIN_SUCCESS}))


def test_tls_before_1_2_is_refused(env: Env) -> None:
    assert asyncio.run(asyncio.wait_for(_refused(env, "viewer", ssl.TLSVersion.TLSv1_1), 30))
    assert not env.records(events=frozenset({EventType.LOGIN_SUCCESS}))
    (failure,) = env.records(events=frozenset({EventType.LOGIN_FAILURE}))
    assert failure.detail["error"] == "UNSUPPORTED_PROTOCOL"  # the server refused it, not the client


def test_demand_reset_lockout_is_shared_between_modbus_and_the_shell(env: Env) -> None:
    async def scenario() -> None:
        shell = await env.guard.open_session("op", Channel.SSH, "192.0.2.1:22", (Permission.TERMINAL_ACCESS,))
        assert isinstance(shell, Session)
        async with serving(env) as listener, tls_client(env, listener, "operator") as client:
            assert not (await client.write_register(DEMAND_RESET, 1)).isError()
            decision = await env.guard.authorize(shell, Permission.PEAK_DEMAND_RESET, "/meter/demand")
            assert decision.reason is DenyReason.LOCKOUT_PERIOD
            assert exception_of(await client.write_register(DEMAND_RESET, 1)) == 1
            env.wall[0] += 901
            decision = await env.guard.authorize(shell, Permission.PEAK_DEMAND_RESET, "/meter/demand")
            assert decision.allowed  # the shell resets now ...
            assert (
                exception_of(await client.write_register(DEMAND_RESET, 1)) == 1
            )  # ... and Modbus must wait again
            env.wall[0] += 901
            assert not (await client.write_register(DEMAND_RESET, 1)).isError()

    run(scenario())
    lockouts = [
        r
        for r in env.records(events=frozenset({EventType.PERMISSION_DENIED}))
        if r.detail.get("reason") == "lockout_period"
    ]
    assert [r.channel for r in lockouts] == [Channel.SSH, Channel.MODBUS, Channel.MODBUS]


def test_a_policy_change_applies_to_the_next_request_and_an_ended_session_hangs_up(env: Env) -> None:
    async def scenario() -> None:
        async with (
            serving(env) as listener,
            tcp_client(listener) as anonymous,
            tls_client(env, listener, "viewer") as view,
        ):
            assert not (await anonymous.read_holding_registers(VOLTAGES, count=10)).isError()
            data = policy_data(env.pki)
            del data["anonymous"]
            env.guard.install_policy(compile_policy(load_policy(data)))
            assert exception_of(await anonymous.read_holding_registers(VOLTAGES, count=10)) == 1
            assert not (await view.read_holding_registers(VOLTAGES, count=10)).isError()
            (session,) = list(env.guard.sessions)
            await env.guard.close_session(session, reason="revoked")
            for _ in range(50):  # the server hangs up on the session the guard ended
                if not view.connected:
                    break
                await asyncio.sleep(0.02)
            try:
                response = await view.read_holding_registers(VOLTAGES, count=10)
            except ModbusException:
                response = None
            assert response is None or (response.isError() and exception_of(response) is None)

    run(scenario())
    (logout,) = env.records(events=frozenset({EventType.LOGOUT_MANUAL}))
    assert (logout.principal, logout.detail["reason"]) == ("scada_view", "revoked")
