"""Unauthenticated parties cannot use the security log to make the meter refuse its operators."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from meterd.guard import Guard, Password, Session
from meterd.guard.evidence import MAX_KEYS, OTHER_SOURCES, EvidenceBudget, SummaryKey
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Outcome
from meterd.seclog import EventType, Query, SecurityLog, read_records
from meterd.seclog.config import FullPolicy, LogConfig
from meterd.seclog.errors import LogFullError
from meterd.seclog.events import PrincipalKind

DOC = {
    "users": {"admin": {"roles": ["rbacmnt"]}, "op": {"roles": ["operator"]}, "aud": {"roles": ["secaud"]}},
    "settings": {"demand_reset_lockout": 0},
}
SMALL = LogConfig(
    append_only_attr=False,
    segment_bytes=16 * 1024,
    capacity_bytes=256 * 1024,
    unauthenticated_records=3,
    unauthenticated_records_total=10,
    unauthenticated_interval=3600,
)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _refusals(directory: Path) -> tuple[int, int]:
    """(refusals recorded one by one, refusals counted in summaries) of the anonymous principal."""
    records = read_records(directory, Query(principals=frozenset({"anonymous"})))
    single = sum(1 for r in records if r.outcome is Outcome.DENY and "summarised" not in r.detail)
    summed = sum(int(str(r.detail["summarised"])) for r in records if "summarised" in r.detail)
    return single, summed


def test_budget_per_source_then_overall_then_refill() -> None:
    budget: EvidenceBudget[EventType] = EvidenceBudget(per_source=2, total=3, interval=60)
    assert [budget.admit("a", 0) for _ in range(3)] == [True, True, False]
    assert budget.admit("b", 1)
    assert not budget.admit("c", 2)  # the overall budget is spent
    assert budget.admit("a", 61)  # a new interval


def test_counts_are_bounded_and_never_lost() -> None:
    budget: EvidenceBudget[EventType] = EvidenceBudget(per_source=1, total=1, interval=60)
    for n in range(MAX_KEYS + 50):
        budget.count(
            SummaryKey(f"10.0.{n // 256}.{n % 256}", Channel.MODBUS, EventType.PERMISSION_DENIED, ""), n
        )
    drained = budget.drain()
    assert len(drained) == MAX_KEYS + 1  # the rest folded into one key
    assert sum(t.count for _, t in drained) == MAX_KEYS + 50
    folded = [t for k, t in drained if k.source == OTHER_SOURCES]
    assert folded[0].count == 50
    key, tally = drained[0]
    budget.give_back(key, tally)
    assert budget.pending == tally.count


def test_anonymous_flood_is_summarised_and_operators_keep_working(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    SecurityLog.init(directory, SMALL)
    clock = _Clock()

    async def main() -> int:
        with SecurityLog.open(directory, SMALL) as seclog:
            guard = Guard(compile_policy(load_policy(DOC)), seclog, monotonic=clock, wall=clock)
            op = await guard.open_session("op", Channel.SSH, "127.0.0.1", (Permission.TERMINAL_ACCESS,))
            assert isinstance(op, Session)
            before = await guard.authorize(op, Permission.PEAK_DEMAND_RESET, "/meter/demand")
            assert before.allowed
            before_seq = seclog.head_seq
            sources = [f"127.0.0.{n}" for n in range(2, 10)]
            sessions = [guard.anonymous_session(Channel.MODBUS, s) for s in sources]
            # Far more refusals than the whole log could hold if each were a record of its own.
            for _ in range(250):
                for session in sessions:
                    refused = await guard.authorize(session, Permission.DSS_CONFIG, "/modbus/unit/1")
                    assert not refused.allowed
                await guard.sweep()
            assert not seclog.full
            assert seclog.unauthenticated_bytes <= SMALL.capacity_bytes * SMALL.unauthenticated_share // 100
            after = await guard.authorize(op, Permission.PEAK_DEMAND_RESET, "/meter/demand")
            assert after.allowed
            assert guard.log_status().refusals_to_summarise > 250 * 8 // 2  # waiting for the interval
            clock.now += SMALL.unauthenticated_interval  # summaries are written once per interval
            await guard.sweep()
            assert guard.log_status().refusals_to_summarise == 0
            return before_seq

    before_seq = asyncio.run(main())
    single, summed = _refusals(directory)
    assert single == SMALL.unauthenticated_records_total  # the overall budget of the interval
    assert single + summed == 250 * 8  # every refusal is counted, none lost
    records = read_records(directory)
    assert before_seq in {r.seq for r in records}  # nothing before the flood was pushed out
    assert not [r for r in records if r.event is EventType.LOG_SEGMENT_DROPPED]
    resets = [r for r in records if r.event is EventType.DEMAND_RESET and r.outcome is Outcome.ALLOW]
    assert len(resets) == 2


def test_unauthenticated_records_stop_at_their_share_and_counts_wait(tmp_path: Path) -> None:
    config = LogConfig(
        append_only_attr=False,
        segment_bytes=8192,
        capacity_bytes=64 * 1024,
        unauthenticated_share=10,
        unauthenticated_records=100_000,
        unauthenticated_records_total=100_000,
    )
    directory = tmp_path / "log"
    SecurityLog.init(directory, config)

    async def main() -> int:
        with SecurityLog.open(directory, config) as seclog:
            guard = Guard(compile_policy(load_policy(DOC)), seclog)
            session = guard.anonymous_session(Channel.MODBUS, "127.0.0.2")
            for _ in range(400):  # about 150 KiB if every refusal were written
                await guard.authorize(session, Permission.DSS_CONFIG, "/modbus/unit/1")
            assert seclog.unauthenticated_bytes <= config.capacity_bytes // 10
            assert seclog.usage_bytes < config.capacity_bytes // 2
            await guard.sweep(final=True)  # no room: the count waits for the next sweep
            return guard.log_status().refusals_to_summarise

    waiting = asyncio.run(main())
    single, summed = _refusals(directory)
    assert waiting > 0
    assert single + summed + waiting == 400


def test_failed_logins_of_unknown_names_are_budgeted_and_say_unknown(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    SecurityLog.init(directory, SMALL)

    async def main() -> None:
        with SecurityLog.open(directory, SMALL) as seclog:
            guard = Guard(compile_policy(load_policy(DOC)), seclog)
            for n in range(20):
                assert not await guard.authenticate(Channel.SSH, "127.0.0.5", f"nobody{n}", Password("x"))
            await guard.sweep(final=True)

    asyncio.run(main())
    failures = read_records(directory, Query(events=frozenset({EventType.LOGIN_FAILURE})))
    single = [r for r in failures if "summarised" not in r.detail]
    assert len(single) == SMALL.unauthenticated_records
    assert {r.principal_kind for r in single} == {PrincipalKind.UNKNOWN}
    summed = [r.detail["summarised"] for r in failures if "summarised" in r.detail]
    assert sum(n for n in summed if isinstance(n, int)) == 20 - len(single)


def test_a_full_log_is_visible_and_an_auditor_acknowledgement_lets_work_resume(tmp_path: Path) -> None:
    config = LogConfig(append_only_attr=False, segment_bytes=8192, capacity_bytes=64 * 1024)
    directory = tmp_path / "log"
    SecurityLog.init(directory, config)

    async def main() -> None:
        with SecurityLog.open(directory, config) as seclog:
            guard = Guard(compile_policy(load_policy(DOC)), seclog)
            op = await guard.open_session("op", Channel.SSH, "127.0.0.1", (Permission.TERMINAL_ACCESS,))
            aud = await guard.open_session("aud", Channel.SSH, "127.0.0.1", (Permission.TERMINAL_ACCESS,))
            assert isinstance(op, Session)
            assert isinstance(aud, Session)
            for _ in range(400):
                if not (await guard.authorize(op, Permission.PEAK_DEMAND_RESET, "/meter/demand")).allowed:
                    break
            assert seclog.full
            status = guard.log_status()
            assert status.full
            assert status.fill_percent >= 95
            assert status.warning_level == 98
            assert not (await guard.authorize(op, Permission.PEAK_DEMAND_RESET, "/meter/demand")).allowed
            # The auditor can still act on the log: its records may use the log's reserve.
            allowed = await guard.authorize(aud, Permission.SECURITY_LOGS_ACCESS, "/files/security-log")
            assert allowed.allowed
            mark = await guard.acknowledge_log(aud, allowed, seclog.head_seq)
            assert mark > 0
            assert (await guard.authorize(op, Permission.PEAK_DEMAND_RESET, "/meter/demand")).allowed
            assert not seclog.full

    asyncio.run(main())
    records = read_records(directory)
    assert any(r.detail.get("acknowledged_to") for r in records if r.principal == "aud")
    drops = [r for r in records if r.event is EventType.LOG_SEGMENT_DROPPED]
    assert drops
    assert all(r.detail["acknowledged"] is True and r.detail["exported"] is False for r in drops)


def test_refuse_policy_stays_full(tmp_path: Path) -> None:
    config = LogConfig(
        append_only_attr=False, segment_bytes=4096, capacity_bytes=16 * 1024, full_policy=FullPolicy.REFUSE
    )
    directory = tmp_path / "log"
    SecurityLog.init(directory, config)
    with SecurityLog.open(directory, config) as seclog:
        with contextlib.suppress(LogFullError):
            for _ in range(200):
                seclog.append(EventType.ALARM, principal="meterd", outcome=Outcome.ERROR)
        assert seclog.full
        seclog.acknowledge(seclog.head_seq)
        with pytest.raises(LogFullError):
            seclog.append(EventType.ALARM, principal="meterd", outcome=Outcome.ERROR)
        assert seclog.full  # refuse never drops, acknowledged or not
