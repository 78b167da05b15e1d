"""Rotation into numbered segments, fill warnings, the full policies, the append-only attribute."""

from __future__ import annotations

import asyncio
import fcntl
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterd.policy.request import Outcome
from meterd.seclog import EventType, FullPolicy, LogConfig, LogFullError, SecurityLog, read_records
from meterd.seclog.segments import clear_append_only, list_segments, set_append_only, write_exported
from meterd.seclog.verify import Problem, verify

from .conftest import fill

SMALL = LogConfig(append_only_attr=False, segment_bytes=4096, capacity_bytes=40960)


def _fill_until_full(log: SecurityLog, limit: int = 1000) -> int:
    for n in range(limit):
        try:
            fill(log, 1)
        except LogFullError:
            return n
    raise AssertionError("the log never filled up")


def test_segments_rotate_and_the_chain_continues(tmp_path: Path) -> None:
    key = SecurityLog.init(tmp_path / "log", SMALL)
    with SecurityLog.open(tmp_path / "log", SMALL) as log:
        fill(log, 40)
    with SecurityLog.open(tmp_path / "log", SMALL) as log:
        fill(log, 20)
    segments = list_segments(tmp_path / "log")
    assert [i for i, _ in segments] == list(range(1, len(segments) + 1))
    assert len(segments) >= 4
    assert all(p.stat().st_size <= 4096 for _, p in segments)
    report = verify(tmp_path / "log", key=key)
    assert report.ok, report.finding
    assert report.records == len(read_records(tmp_path / "log"))


def _append_concurrently(log: SecurityLog, appenders: int, each: int) -> list[int]:
    """Run ``appenders`` async appenders of ``each`` records in one event loop; return every seq acknowledged."""

    async def appender() -> list[int]:
        return [
            await log.append_async(
                EventType.ALARM, principal="meterd", outcome=Outcome.ERROR, detail={"i": i}
            )
            for i in range(each)
        ]

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(appender() for _ in range(appenders)))

    return [seq for seqs in asyncio.run(main()) for seq in seqs]


def test_rotation_under_concurrent_appenders_loses_and_tears_nothing(tmp_path: Path) -> None:
    # Segments rotate while earlier groups are still being synced: every
    # acknowledged record must be in a segment that was synced before it was closed.
    config = LogConfig(append_only_attr=False, segment_bytes=4096, capacity_bytes=1 << 24)
    key = SecurityLog.init(tmp_path / "log", config)
    with SecurityLog.open(tmp_path / "log", config) as log:
        acknowledged = _append_concurrently(log, 24, 25)
    assert len(set(acknowledged)) == 24 * 25
    segments = list_segments(tmp_path / "log")
    assert len(segments) > 20
    report = verify(tmp_path / "log", key=key)
    assert report.ok, report.finding
    assert set(acknowledged) <= {r.seq for r in read_records(tmp_path / "log")}


def test_blocking_and_async_appenders_together_rotate_and_reopen(tmp_path: Path) -> None:
    # Blocking appenders flush their own groups while an event loop's groups
    # are sealed and synced, across rotations: each record is acknowledged
    # once, every acknowledged record verifies, and the key the syncer stored
    # continues the chain after reopening.
    config = LogConfig(append_only_attr=False, segment_bytes=8192, capacity_bytes=1 << 24)
    key = SecurityLog.init(tmp_path / "log", config)
    acknowledged: list[int] = []
    lock = threading.Lock()
    with SecurityLog.open(tmp_path / "log", config) as log:

        def blocking(n: int) -> None:
            seqs = [
                log.append(EventType.CONFIG_ACCESS, principal="op", outcome=Outcome.ALLOW, detail={"i": i})
                for i in range(n)
            ]
            with lock:
                acknowledged.extend(seqs)

        threads = [threading.Thread(target=blocking, args=(40,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        from_loop = _append_concurrently(log, 16, 40)
        for thread in threads:
            thread.join(timeout=60)
            assert not thread.is_alive()
    acknowledged += from_loop
    assert len(acknowledged) == len(set(acknowledged)) == 4 * 40 + 16 * 40
    assert len(list_segments(tmp_path / "log")) > 10
    with SecurityLog.open(tmp_path / "log", config) as log:
        after = log.append(EventType.ALARM, principal="meterd", outcome=Outcome.ERROR)
    report = verify(tmp_path / "log", key=key)
    assert report.ok, report.finding
    assert {*acknowledged, after} <= {r.seq for r in read_records(tmp_path / "log")}


def test_fill_warnings_then_refusal_until_exported(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    key = SecurityLog.init(directory, SMALL)
    with SecurityLog.open(directory, SMALL) as log:
        written = _fill_until_full(log)
        assert written > 50
        assert not log.failed  # a full log refuses, it does not break
        assert log.fill_ratio > 0.95
        warnings = [r.detail["percent"] for r in read_records(directory) if r.event is EventType.LOG_CAPACITY]
        assert warnings == [80, 85, 90, 95, 98]  # the levels IEEE 1686 devices warn at
        with pytest.raises(LogFullError):
            fill(log, 1)
        assert log.full  # a visible state, for the metrics and show status
        write_exported(directory, log.head_seq)  # the forwarder confirms everything
        fill(log, 5)
        assert not log.full
    records = read_records(directory)
    drops = [r for r in records if r.event is EventType.LOG_SEGMENT_DROPPED]
    assert drops
    assert all(r.detail["exported"] is True for r in drops)
    assert drops[0].detail["segment"] == "seg-00000001.log"
    assert records[0].seq > 1
    report = verify(directory, key=key)
    assert report.ok, report.finding


def test_drop_oldest_keeps_the_meter_writable(tmp_path: Path) -> None:
    config = LogConfig(
        append_only_attr=False, segment_bytes=4096, capacity_bytes=16384, full_policy=FullPolicy.DROP_OLDEST
    )
    key = SecurityLog.init(tmp_path / "log", config)
    with SecurityLog.open(tmp_path / "log", config) as log:
        fill(log, 300)
        assert log.usage_bytes <= 16384
    drops = [r for r in read_records(tmp_path / "log") if r.event is EventType.LOG_SEGMENT_DROPPED]
    assert len(drops) > 3
    assert not any(r.detail["exported"] for r in drops)
    report = verify(tmp_path / "log", key=key)
    assert report.ok, report.finding


def test_refuse_policy_never_drops(tmp_path: Path) -> None:
    config = LogConfig(
        append_only_attr=False, segment_bytes=4096, capacity_bytes=16384, full_policy=FullPolicy.REFUSE
    )
    SecurityLog.init(tmp_path / "log", config)
    with SecurityLog.open(tmp_path / "log", config) as log:
        _fill_until_full(log)
    assert list_segments(tmp_path / "log")[0][0] == 1


def test_a_segment_removed_behind_the_logs_back_is_missing(tmp_path: Path) -> None:
    SecurityLog.init(tmp_path / "log", SMALL)
    with SecurityLog.open(tmp_path / "log", SMALL) as log:
        fill(log, 40)
    segments = list_segments(tmp_path / "log")
    segments[0][1].unlink()
    finding = verify(tmp_path / "log").finding
    assert finding is not None
    assert (finding.problem, finding.seq) == (Problem.MISSING, 1)
    segments[2][1].unlink()
    finding = verify(tmp_path / "log").finding
    assert finding is not None
    assert finding.problem is Problem.MISSING


def _append_only(path: Path) -> bool:
    with open(path, "rb") as f:
        buf = bytearray(struct.pack("l", 0))
        fcntl.ioctl(f.fileno(), 0x80086601, buf)
        return bool(struct.unpack("l", buf)[0] & 0x20)


@pytest.fixture
def attr_dir(tmp_path: Path) -> Iterator[Path]:
    probe = tmp_path / "probe"
    with open(probe, "wb") as f:
        permitted = set_append_only(f.fileno(), True)
    clear_append_only(probe)
    if not permitted:
        pytest.skip("this file system or process may not set the append-only attribute")
    directory = tmp_path / "log"
    yield directory
    for path in directory.iterdir():  # let the temporary directory be removed
        clear_append_only(path)


def test_segments_get_the_append_only_attribute(attr_dir: Path) -> None:
    config = LogConfig(segment_bytes=4096, capacity_bytes=16384, full_policy=FullPolicy.DROP_OLDEST)
    key = SecurityLog.init(attr_dir, config)
    with SecurityLog.open(attr_dir, config) as log:
        fill(log, 100)  # rotation and drops work through the attribute
    segments = list_segments(attr_dir)
    assert len(segments) > 1
    assert segments[0][0] > 1
    assert all(_append_only(p) for _, p in segments)
    with pytest.raises(PermissionError):
        open(segments[0][1], "r+b").close()  # rewriting in place is impossible
    with open(segments[-1][1], "ab") as f:  # appending is not: a torn write...
        f.write(b"0badc0de {")
    with SecurityLog.open(attr_dir, config) as log:  # ...is cut through the attribute
        fill(log, 1)
    assert _append_only(segments[-1][1])
    assert verify(attr_dir, key=key).ok
