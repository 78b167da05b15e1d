"""Reopening after a crash: torn tails are cut and recorded, real damage is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meterd.seclog import EventType, LogCorruptError, LogKeyError, SecurityLog, read_records
from meterd.seclog.keys import KeyFile
from meterd.seclog.segments import KEY_FILE, list_segments, segment_name
from meterd.seclog.verify import Problem, verify

from .conftest import TEST_CONFIG, fill


def _segment(directory: Path) -> Path:
    return list_segments(directory)[-1][1]


@pytest.mark.parametrize("torn", [b"3f2a", b'0123abcd {"v":1,"seq":', b"\0" * 300, b"deadbeef {}\n"])
def test_torn_tail_is_cut_and_recorded(log_dir: Path, initial_key: bytes, torn: bytes) -> None:
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        seqs = fill(log, 5)
    segment = _segment(log_dir)
    good_size = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(torn)
    assert verify(log_dir, key=initial_key).finding is not None
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        fill(log, 1)
    records = read_records(log_dir)
    recovered = [r for r in records if r.event is EventType.LOG_RECOVERED]
    assert len(recovered) == 1
    assert recovered[0].detail == {"segment": segment.name, "offset": good_size, "cut_bytes": len(torn)}
    assert {r.seq for r in records} >= set(seqs)
    assert verify(log_dir, key=initial_key).ok


def test_damage_before_the_end_is_refused(log_dir: Path, initial_key: bytes) -> None:
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        fill(log, 5)
    segment = _segment(log_dir)
    data = bytearray(segment.read_bytes())
    data[100] ^= 0x20
    segment.write_bytes(bytes(data))
    with pytest.raises(LogCorruptError):
        SecurityLog.open(log_dir, TEST_CONFIG)


def test_a_log_cut_behind_its_key_is_refused(log_dir: Path, initial_key: bytes) -> None:
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        fill(log, 5)
    segment = _segment(log_dir)
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:-2]))
    with pytest.raises(LogKeyError, match="acknowledged records are missing"):
        SecurityLog.open(log_dir, TEST_CONFIG)


def test_stale_key_catches_up(log_dir: Path, initial_key: bytes) -> None:
    saved = (log_dir / KEY_FILE).read_bytes()
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        fill(log, 5)
    (log_dir / KEY_FILE).write_bytes(saved)  # as if the key writes after the log writes were lost
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        fill(log, 2)
    assert verify(log_dir, key=initial_key).ok


def test_a_key_that_does_not_match_is_refused(log_dir: Path, initial_key: bytes) -> None:
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        fill(log, 3)
    (log_dir / KEY_FILE).unlink()
    KeyFile.create(log_dir / KEY_FILE, 2, bytes(32))
    with pytest.raises(LogKeyError, match="does not match"):
        SecurityLog.open(log_dir, TEST_CONFIG)


def test_a_torn_key_write_falls_back_to_the_older_slot(log_dir: Path, initial_key: bytes) -> None:
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        fill(log, 3)
    before = (log_dir / KEY_FILE).read_bytes()
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        fill(log, 1)
    after = (log_dir / KEY_FILE).read_bytes()
    new = 0 if any(after[:64]) else 64
    old = 64 - new
    assert not any(after[old : old + 64])  # only the current key is kept
    # The instant between writing the new slot (torn here) and erasing the old one:
    older = before[:64] if any(before[:64]) else before[64:]
    torn = bytearray(after)
    torn[old : old + 64] = older
    torn[new + 10] ^= 0xFF
    (log_dir / KEY_FILE).write_bytes(bytes(torn))
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        fill(log, 1)
    assert verify(log_dir, key=initial_key).ok


def test_crash_right_after_rotation(log_dir: Path, initial_key: bytes) -> None:
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        fill(log, 3)
    os.close(os.open(log_dir / segment_name(2), os.O_WRONLY | os.O_CREAT, 0o600))
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        fill(log, 3)
    report = verify(log_dir, key=initial_key)
    assert report.ok, report.finding


def test_verify_names_a_torn_tail_as_truncated(log_dir: Path, initial_key: bytes) -> None:
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        fill(log, 2)
    with open(_segment(log_dir), "ab") as f:
        f.write(b"0011")
    finding = verify(log_dir).finding
    assert finding is not None
    assert finding.problem is Problem.TRUNCATED
