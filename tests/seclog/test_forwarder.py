"""Store-and-forward to a real rsyslogd, over TCP and TLS, across a collector outage."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from meterd.policy.request import Channel, Outcome
from meterd.seclog import EventType, SecurityLog
from meterd.seclog.forwarder import CollectorConfig, Forwarder
from meterd.seclog.reader import iter_lines
from meterd.seclog.segments import read_exported
from meterd.seclog.verify import verify

from .collector import Collector
from .conftest import TEST_CONFIG


def _wait(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(params=[False, True], ids=["tcp", "tls"])
def collector(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Collector]:
    directory = tmp_path / "collector"
    directory.mkdir()
    started = Collector(directory, tls=request.param)
    started.start()
    yield started
    started.stop()


def _append(log: SecurityLog, count: int, phase: str) -> None:
    for i in range(count):
        log.append(
            EventType.LOGIN_SUCCESS,
            principal=f"user{i % 5}",
            outcome=Outcome.ALLOW,
            channel=Channel.SSH,
            source="192.0.2.10",
            detail={"phase": phase, "i": i},
        )
        if i % 25 == 0:
            time.sleep(0.005)  # a stream, not one burst


def test_outage_loses_nothing_and_repeats_nothing(collector: Collector, tmp_path: Path) -> None:
    directory = tmp_path / "log"
    key = SecurityLog.init(directory, TEST_CONFIG)
    log = SecurityLog.open(directory, TEST_CONFIG)
    config = CollectorConfig(
        "127.0.0.1",
        collector.port,
        tls=collector.client_tls,
        server_hostname="localhost",
        hostname="meter-7",
        batch_records=40,
        timeout=5,
        retry_min=0.05,
        retry_max=0.3,
        poll_interval=0.02,
    )
    forwarder = Forwarder(directory, config, durable_seq=lambda: log.head_seq)
    forwarder.start()
    try:
        _append(log, 150, "before")
        _wait(lambda: forwarder.cursor == log.head_seq, "the forwarder to catch up")
        collector.stop()  # the collector goes away mid-stream
        _append(log, 150, "during")
        time.sleep(0.3)  # the forwarder fails and retries meanwhile
        assert forwarder.cursor < log.head_seq
        assert forwarder.last_error
        collector.start()
        _append(log, 100, "after")
        _wait(lambda: forwarder.cursor == log.head_seq, "the forwarder to send the backlog")
    finally:
        forwarder.stop()
    log.close()  # its final checkpoint is sent by a new forwarder: the cursor persisted
    restarted = Forwarder(directory, config)
    assert restarted.cursor == read_exported(directory) > 400
    assert restarted.send_pending() == 1

    _wait(lambda: len(collector.frames()) == restarted.cursor, "the collector to write everything", 10)
    stored = [line.data.rstrip(b"\n") for line in iter_lines(directory)]
    assert collector.frames() == stored  # record for record: same order, none lost, none twice
    report = verify(collector.out, key=key)
    assert report.ok, report.finding
    assert report.checkpoints >= 1


def test_records_beyond_the_durable_head_wait(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    SecurityLog.init(directory, TEST_CONFIG)
    forwarder = Forwarder(directory, CollectorConfig("127.0.0.1", 9), durable_seq=lambda: 1)
    assert [seq for seq, _ in forwarder.pending(10)] == [1]
