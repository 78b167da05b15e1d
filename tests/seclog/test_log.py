"""Appending (blocking, concurrent, async), failure behaviour, the reading gate."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from pathlib import Path

import pytest

from meterd.errors import SecurityLogError
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, DenyReason, Outcome, Request
from meterd.seclog import (
    EventType,
    LogAccessError,
    LogConfig,
    LogUnavailableError,
    Query,
    SecurityLog,
    read_records,
)
from meterd.seclog.syncer import Fault
from meterd.seclog.verify import verify

from .conftest import TEST_CONFIG, decision, fill


def test_init_makes_a_private_log_and_records_itself(log_dir: Path, initial_key: bytes) -> None:
    assert len(initial_key) == 32
    assert os.stat(log_dir).st_mode & 0o777 == 0o700
    assert all(os.stat(p).st_mode & 0o777 == 0o600 for p in log_dir.iterdir())
    records = read_records(log_dir)
    assert [r.event for r in records] == [EventType.LOG_INIT, EventType.LOG_CHECKPOINT]
    with pytest.raises(FileExistsError):
        SecurityLog.init(log_dir, TEST_CONFIG)


def test_append_returns_consecutive_seqs_and_survives_reopen(log_dir: Path, initial_key: bytes) -> None:
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        seqs = fill(log, 5)
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        assert log.head_seq == seqs[-1] + 1  # the closing checkpoint
        assert fill(log, 1) == [seqs[-1] + 2]
    report = verify(log_dir, key=initial_key)
    assert report.ok, report.finding
    assert report.mac_checked


def test_record_carries_every_field(log: SecurityLog) -> None:
    seq = log.append(
        EventType.CONFIG_CHANGE,
        principal="eve",
        outcome=Outcome.ALLOW,
        channel=Channel.MODBUS,
        source="198.51.100.4:502",
        permission=Permission.COMM_CONFIG,
        resource="/modbus/unit/1",
        detail={"setting": "baud", "value": 19200},
    )
    record = next(r for r in read_records(log.directory) if r.seq == seq)
    assert (
        record.event,
        record.principal,
        record.channel,
        record.source,
        record.permission,
        record.resource,
        record.outcome,
    ) == (
        EventType.CONFIG_CHANGE,
        "eve",
        Channel.MODBUS,
        "198.51.100.4:502",
        "comm_config",
        "/modbus/unit/1",
        Outcome.ALLOW,
    )
    assert record.detail == {"setting": "baud", "value": 19200}
    assert record.time.endswith("Z")
    assert "." in record.time


def test_decision_is_recorded_with_reason(log: SecurityLog) -> None:
    denied = Decision(
        Request("anonymous", Permission.PEAK_DEMAND_RESET, "/", Channel.MODBUS, "203.0.113.1"),
        Outcome.DENY,
        DenyReason.NOT_GRANTED,
    )
    seq = asyncio.run(log.append_decision_async(denied))
    record = next(r for r in read_records(log.directory) if r.seq == seq)
    assert record.event is EventType.PERMISSION_DENIED
    assert record.principal_kind.value == "anonymous"
    assert record.detail["reason"] == "not_granted"


def test_concurrent_appenders_share_syncs(log: SecurityLog) -> None:
    syncs: list[float] = []
    log.on_commit(syncs.append)
    results: list[list[int]] = []

    def worker() -> None:
        results.append(fill(log, 50))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = sorted(s for r in results for s in r)
    assert seqs == list(range(seqs[0], seqs[0] + 800))
    fill(log, 1)  # reports the syncs made since the last report
    assert 0 < len(syncs) < 800  # group commit: fewer syncs than records


def test_async_append_and_decision(log: SecurityLog) -> None:
    async def main() -> list[int]:
        allowed = decision("op", Permission.TIME_SYNC)
        return await asyncio.gather(
            *(
                log.append_async(EventType.TIME_CHANGE, principal="op", outcome=Outcome.ALLOW)
                for _ in range(20)
            ),
            log.append_decision_async(allowed, event=EventType.TIME_CHANGE),
        )

    seqs = asyncio.run(main())
    assert sorted(seqs) == list(range(min(seqs), min(seqs) + 21))


def test_closed_log_refuses_promptly(log_dir: Path, initial_key: bytes) -> None:
    log = SecurityLog.open(log_dir, TEST_CONFIG)
    log.close()
    with pytest.raises(LogUnavailableError) as info:
        fill(log, 1)
    assert info.value.reason == "closed"


def test_write_failure_fails_closed(log: SecurityLog) -> None:
    log._store.syncer.set_fault(Fault.FAIL, errno.EIO)
    with pytest.raises(LogUnavailableError):
        fill(log, 1)
    assert log.failed
    with pytest.raises(SecurityLogError):  # every later append too, at once
        asyncio.run(log.append_async(EventType.ALARM, principal="meterd", outcome=Outcome.ERROR))


def test_stalled_storage_times_out(log: SecurityLog) -> None:
    log._store.syncer.set_fault(Fault.STALL)
    try:
        with pytest.raises(LogUnavailableError) as info:
            log.append(EventType.ALARM, principal="meterd", outcome=Outcome.ERROR, timeout=0.1)
        assert info.value.reason == "timeout"

        async def slow() -> int:
            return await log.append_async(
                EventType.ALARM, principal="meterd", outcome=Outcome.ERROR, timeout=0.1
            )

        with pytest.raises(LogUnavailableError):
            asyncio.run(slow())
    finally:
        log._store.syncer.set_fault(Fault.NONE)


def test_a_group_whose_count_does_not_match_is_refused_whole(log: SecurityLog) -> None:
    syncer = log._store.syncer
    first = log._store.seq + 1
    ts = b"2026-11-22T10:00:00.000000Z"
    for records, count in ((b'"a":1\n"b":2', 3), (b'"a":1\n"b":2', 1), (b'"a":1\n', 1)):
        with pytest.raises(LogUnavailableError):
            syncer.submit(records, count, ts)
    # Nothing was queued and the syncer is healthy: the log goes on from the same seq.
    assert fill(log, 1) == [first]
    assert verify(log.directory).ok


def test_read_needs_security_logs_access_and_is_recorded(log: SecurityLog) -> None:
    fill(log, 3, principal="bob")
    records = log.read(decision(), Query(principals=frozenset({"bob"})))
    assert len(records) == 3
    last = read_records(log.directory)[-1]
    assert (last.event, last.principal, last.outcome) == (
        EventType.AUDIT_LOG_ACCESS,
        "auditor",
        Outcome.ALLOW,
    )
    assert last.detail["principals"] == "bob"


@pytest.mark.parametrize(
    "refused",
    [
        decision(outcome=Outcome.DENY),
        decision(outcome=Outcome.ERROR),
        decision(permission=Permission.FS_READ_ONLY),
    ],
)
def test_refused_read_returns_nothing_but_is_recorded(log: SecurityLog, refused: Decision) -> None:
    with pytest.raises(LogAccessError):
        log.read(refused)
    last = read_records(log.directory)[-1]
    assert (last.event, last.outcome) == (EventType.AUDIT_LOG_ACCESS, Outcome.DENY)


def test_one_writer_per_log(log: SecurityLog) -> None:
    with pytest.raises(LogUnavailableError) as info:
        SecurityLog.open(log.directory, TEST_CONFIG)
    assert info.value.reason == "busy"


def test_checkpoint_on_demand(log: SecurityLog) -> None:
    fill(log, 2)
    seq = log.checkpoint()
    last = read_records(log.directory)[-1]
    assert last.event is EventType.LOG_CHECKPOINT
    assert last.seq == seq == log.head_seq
    assert last.detail["head_seq"] == last.seq - 1


def test_async_append_never_blocks_the_loop(log: SecurityLog) -> None:
    log._store.syncer.set_fault(Fault.DELAY, 300_000)

    async def main() -> tuple[int, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        seq = await log.append_async(EventType.ALARM, principal="meterd", outcome=Outcome.ERROR)
        task.cancel()
        return seq, ticks

    seq, ticks = asyncio.run(main())
    assert seq > 0
    assert ticks >= 10  # the loop ran on while the record waited for storage


def test_overload_is_refused_at_once(log_dir: Path, initial_key: bytes) -> None:
    log = SecurityLog.open(log_dir, LogConfig(append_only_attr=False, max_pending=2))
    log._store.syncer.set_fault(Fault.STALL)
    waiting = [threading.Thread(target=fill, args=(log, 1)) for _ in range(2)]
    try:
        for thread in waiting:  # two wait for the stalled storage: the bound is reached
            thread.start()
            time.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(LogUnavailableError) as info:
            fill(log, 1)
        assert info.value.reason == "overloaded"
        assert time.monotonic() - started < 0.5
    finally:
        log._store.syncer.set_fault(Fault.NONE)
        for thread in waiting:
            thread.join()
        log.close()
