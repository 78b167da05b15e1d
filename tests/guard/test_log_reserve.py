"""A full log stays serviceable for its auditor, and bursts and cancellations lose nothing."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from meterd.errors import PolicyValidationError
from meterd.guard import Guard, Session
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Outcome
from meterd.seclog import EventType, Query, SecurityLog, read_records
from meterd.seclog.config import FullPolicy, LogConfig
from meterd.seclog.errors import LogFullError

DOC = {
    "users": {"admin": {"roles": ["rbacmnt"]}, "op": {"roles": ["operator"]}, "aud": {"roles": ["secaud"]}},
    "settings": {"demand_reset_lockout": 0},
}
FULLABLE = LogConfig(append_only_attr=False, segment_bytes=8192, capacity_bytes=64 * 1024)
DEMAND = "/meter/demand"


async def _login(guard: Guard, name: str) -> Session:
    session = await guard.open_session(name, Channel.SSH, "127.0.0.1", (Permission.TERMINAL_ACCESS,))
    assert isinstance(session, Session)
    return session


async def _fill(guard: Guard, op: Session) -> None:
    for _ in range(400):
        if not (await guard.authorize(op, Permission.PEAK_DEMAND_RESET, DEMAND)).allowed:
            break
    assert guard.seclog.full


def test_an_auditor_who_logs_in_after_the_log_filled_can_still_release_it(tmp_path: Path) -> None:
    SecurityLog.init(tmp_path / "log", FULLABLE)

    async def main() -> None:
        with SecurityLog.open(tmp_path / "log", FULLABLE) as seclog:
            guard = Guard(compile_policy(load_policy(DOC)), seclog)
            op = await _login(guard, "op")
            await _fill(guard, op)
            refused = await guard.open_session("op", Channel.SSH, "127.0.0.1", (Permission.TERMINAL_ACCESS,))
            assert not isinstance(refused, Session)  # an operator's login needs an ordinary record
            # Others' refusals about the log never eat the auditor's reserve.
            for _ in range(30):
                assert not (
                    await guard.authorize(op, Permission.SECURITY_LOGS_ACCESS, "/files/security-log")
                ).allowed
            aud = await _login(guard, "aud")  # the login record uses the reserve
            assert (await guard.authorize(aud, Permission.TERMINAL_ACCESS, "/meter")).allowed  # show status
            assert seclog.full  # reserved writes do not make a full log look writable
            allowed = await guard.authorize(aud, Permission.SECURITY_LOGS_ACCESS, "/files/security-log")
            assert allowed.allowed
            await guard.acknowledge_log(aud, allowed, seclog.head_seq)
            assert (await guard.authorize(op, Permission.PEAK_DEMAND_RESET, DEMAND)).allowed
            assert not seclog.full

    asyncio.run(main())
    records = read_records(tmp_path / "log", Query(principals=frozenset({"aud"})))
    acknowledgement = [r for r in records if "acknowledged_to" in r.detail]
    assert len(acknowledgement) == 1
    drops = read_records(tmp_path / "log", Query(events=frozenset({EventType.LOG_SEGMENT_DROPPED})))
    assert drops
    assert all(
        int(str(r.detail["last_seq"])) <= int(str(acknowledgement[0].detail["acknowledged_to"]))
        for r in drops
    )


@pytest.mark.parametrize("policy", [FullPolicy.DROP_EXPORTED, FullPolicy.DROP_OLDEST])
def test_a_burst_admitted_in_one_turn_cannot_overrun_the_room(tmp_path: Path, policy: FullPolicy) -> None:
    config = LogConfig(
        append_only_attr=False,
        segment_bytes=16 * 1024,
        capacity_bytes=256 * 1024,
        full_policy=policy,
        unauthenticated_records=10_000,
        unauthenticated_records_total=10_000,
    )
    SecurityLog.init(tmp_path / "log", config)

    async def main() -> None:
        with SecurityLog.open(tmp_path / "log", config) as seclog:
            guard = Guard(compile_policy(load_policy(DOC)), seclog)
            op = await _login(guard, "op")
            first = await guard.authorize(op, Permission.PEAK_DEMAND_RESET, DEMAND)
            assert first.allowed
            sessions = [guard.anonymous_session(Channel.MODBUS, f"127.0.0.{n}") for n in range(2, 12)]
            burst = [
                guard.authorize(s, Permission.DSS_CONFIG, "/modbus/unit/1")
                for s in sessions
                for _ in range(60)
            ]
            results = await asyncio.gather(*burst, guard.authorize(op, Permission.PEAK_DEMAND_RESET, DEMAND))
            assert results[-1].allowed
            assert seclog.unauthenticated_bytes <= config.capacity_bytes * config.unauthenticated_share // 100
            assert not seclog.full
            await guard.sweep(final=True)

    asyncio.run(main())
    records = read_records(tmp_path / "log")
    assert records[0].seq == 1  # nothing was dropped
    single = sum(1 for r in records if r.principal == "anonymous" and "summarised" not in r.detail)
    summed = sum(int(str(r.detail["summarised"])) for r in records if "summarised" in r.detail)
    assert single + summed <= 600  # the rest waits, counted (see the stop record in the daemon)


def test_a_cancelled_sweep_loses_no_count(tmp_path: Path) -> None:
    config = LogConfig(append_only_attr=False, unauthenticated_records=1, unauthenticated_records_total=1)
    SecurityLog.init(tmp_path / "log", config)

    async def main() -> int:
        with SecurityLog.open(tmp_path / "log", config) as seclog:
            guard = Guard(compile_policy(load_policy(DOC)), seclog)
            for n in range(300):
                session = guard.anonymous_session(Channel.MODBUS, f"10.0.{n // 250}.{n % 250}")
                await guard.authorize(session, Permission.DSS_CONFIG, "/modbus/unit/1")
            sweeping = asyncio.ensure_future(guard.sweep(final=True))
            await asyncio.sleep(0)
            sweeping.cancel()  # shutdown cancels the housekeeping task mid-sweep
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping
            await guard.sweep(final=True)  # the next sweep waits for the interrupted one
            return guard.log_status().refusals_to_summarise

    waiting = asyncio.run(main())
    records = read_records(tmp_path / "log", Query(principals=frozenset({"anonymous"})))
    single = sum(1 for r in records if "summarised" not in r.detail)
    summed = sum(int(str(r.detail["summarised"])) for r in records if "summarised" in r.detail)
    assert single + summed + waiting == 300


def test_probes_on_a_connection_are_budgeted_whoever_made_them(tmp_path: Path) -> None:
    config = LogConfig(append_only_attr=False, unauthenticated_records=2, unauthenticated_records_total=50)
    SecurityLog.init(tmp_path / "log", config)

    async def main() -> None:
        with SecurityLog.open(tmp_path / "log", config) as seclog:
            guard = Guard(compile_policy(load_policy(DOC)), seclog)
            for port in range(40000, 40010):  # a new connection each time: the same party
                await guard.record(
                    EventType.PERMISSION_DENIED,
                    "op",
                    Outcome.DENY,
                    channel=Channel.SSH,
                    source=f"127.0.0.9:{port}",
                    detail={"refused": "port_forwarding"},
                    budgeted=True,
                )
            await guard.sweep(final=True)

    asyncio.run(main())
    records = read_records(tmp_path / "log", Query(events=frozenset({EventType.PERMISSION_DENIED})))
    assert len([r for r in records if r.principal == "op"]) == 2
    assert [r.detail["summarised"] for r in records if "summarised" in r.detail] == [8]


def test_a_checkpoint_asked_for_on_a_full_log_does_not_grow_it(tmp_path: Path) -> None:
    config = LogConfig(
        append_only_attr=False, segment_bytes=4096, capacity_bytes=16 * 1024, full_policy=FullPolicy.REFUSE
    )
    SecurityLog.init(tmp_path / "log", config)
    with SecurityLog.open(tmp_path / "log", config) as seclog:
        with contextlib.suppress(LogFullError):
            for _ in range(200):
                seclog.append(EventType.ALARM, principal="meterd", outcome=Outcome.ERROR)
        for _ in range(50):
            with contextlib.suppress(LogFullError):
                seclog.checkpoint()
        assert seclog.usage_bytes <= config.capacity_bytes


def test_no_policy_may_name_meterd_itself() -> None:
    with pytest.raises(PolicyValidationError, match="reserved for meterd"):
        load_policy({"users": {"meterd": {"roles": ["viewer"]}}})
