"""Counting a window by distinct record content gives exactly what counting record by record gives."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import pytest

from benchmarks.synthlog import Spec, allow, deny, workload, write_log
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.review.source import read_log
from meterd.review.usage import LogUsage, UsageCollector
from meterd.seclog.events import EventType
from meterd.seclog.verify import verify_records

from . import scenario


def _record_by_record(log: Path, key: bytes | None, window: tuple[str, str]) -> LogUsage:
    collector = UsageCollector(*window)
    assert verify_records(log, key=key, visit=collector.add).ok
    return collector.usage


def _mixed(count: int) -> list[Spec]:
    """The benchmark's workload interleaved with records a review lists one by one."""
    rng = random.Random(7)
    specs = list(workload(count))
    for n in range(0, count, 97):
        at = specs[n].at
        specs.insert(n, Spec(EventType.POLICY_CHANGE, "alice", detail={"how": "push", "version": 3}, at=at))
        specs.insert(
            n,
            deny(
                rng.choice(("bob", "carol")),
                Permission.MASTER_RESET,
                at,
                reason="dual_control",
                detail={"dual_control": "rejected", "why": "rejected by dave"},
            ),
        )
        specs.insert(n, allow("erin", Permission.TIME_SYNC, at, channel=Channel.PANEL, kind="application"))
    return specs


@pytest.mark.parametrize(
    "window",
    [("", ""), ("2026-01-05T08:03:00.000000Z", ""), ("", "2026-01-05T08:07:30.000000Z")],
)
def test_contents_count_what_records_count(tmp_path: Path, window: tuple[str, str]) -> None:
    log = tmp_path / "log"
    key = write_log(log, _mixed(2000))
    expected = _record_by_record(log, key, window)
    since = None if not window[0] else _moment(window[0])
    until = None if not window[1] else _moment(window[1])
    for workers in (1, 2):
        found = read_log(log, key=key, since=since, until=until, workers=workers, min_bytes=0)
        assert found.usage == expected
        assert found.report == verify_records(log, key=key)


def test_the_scenario_counts_alike(tmp_path: Path) -> None:
    log, _, _ = scenario.make(tmp_path)
    assert read_log(log, workers=1).usage == _record_by_record(log, None, ("", ""))


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
