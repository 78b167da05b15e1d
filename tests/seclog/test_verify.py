"""Verification finds every single edit, deletion, duplication, reordering and truncation."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterd.policy.request import Outcome
from meterd.seclog import EventType, LogConfig, SecurityLog
from meterd.seclog.codec import decode_frame, make_frame
from meterd.seclog.segments import segment_name
from meterd.seclog.verify import Problem, VerifyReport, load_checkpoint, verify

from .conftest import fill


@dataclass(frozen=True)
class Sample:
    key: bytes
    lines: list[bytes]
    checkpoint_lines: list[int]  # indexes of checkpoint records


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    directory = tmp_path_factory.mktemp("verify") / "log"
    config = LogConfig(append_only_attr=False, checkpoint_interval=8)
    key = SecurityLog.init(directory, config)
    with SecurityLog.open(directory, config) as log:
        fill(log, 30)
        log.append(EventType.ALARM, principal="meterd", outcome=Outcome.ERROR, detail={"text": "é"})
    lines = (directory / segment_name(1)).read_bytes().splitlines(keepends=True)
    checkpoints = [
        i for i, line in enumerate(lines) if decode_frame(line).record.event is EventType.LOG_CHECKPOINT
    ]
    return Sample(key, lines, checkpoints)


def check(data: bytes, key: bytes | None, checkpoint_of: bytes | None = None) -> VerifyReport:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / segment_name(1)).write_bytes(data)
        checkpoint = None
        if checkpoint_of is not None:
            (directory / "trusted").write_bytes(checkpoint_of)
            checkpoint = load_checkpoint(directory / "trusted", key)
        return verify(directory, key=key, checkpoint=checkpoint)


def seq_of(line: bytes) -> int:
    return decode_frame(line).record.seq


def test_intact_log_verifies(sample: Sample) -> None:
    report = check(b"".join(sample.lines), sample.key, b"".join(sample.lines))
    assert report.ok
    assert report.anchored
    assert report.checkpoints == len(sample.checkpoint_lines)


def test_wrong_key_is_a_bad_mac(sample: Sample) -> None:
    report = check(b"".join(sample.lines), bytes(32))
    assert report.finding is not None
    assert (report.finding.seq, report.finding.problem) == (1, Problem.BAD_MAC)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), with_key=st.booleans())
def test_any_flipped_byte_is_detected(sample: Sample, data: st.DataObject, with_key: bool) -> None:
    blob = bytearray(b"".join(sample.lines))
    position = data.draw(st.integers(0, len(blob) - 1))
    blob[position] ^= data.draw(st.integers(1, 255))
    report = check(bytes(blob), sample.key if with_key else None)
    assert report.finding is not None


def test_resealed_edit_needs_the_key(sample: Sample) -> None:
    """An edit with the checksum and every later link recomputed is caught by the MACs only."""
    records = [decode_frame(line) for line in sample.lines]
    prev = records[0].record.prev
    forged = []
    for i, frame in enumerate(records):
        r = frame.record
        body = frame.body.replace(b'"attempt":3}', b'"attempt":4}') if i == 5 else frame.body
        body = body.replace(f'"prev":"{r.prev}"'.encode(), f'"prev":"{prev}"'.encode())
        new = decode_frame(make_frame(body, frame.mac))
        if new.record.event is EventType.LOG_CHECKPOINT:  # keep checkpoints self-consistent too
            body = body.replace(str(r.detail["head_digest"]).encode(), prev.encode())
            new = decode_frame(make_frame(body, frame.mac))
        forged.append(make_frame(body, frame.mac))
        prev = new.record.digest
    blob = b"".join(forged)
    assert check(blob, None).ok  # consistent without the key...
    finding = check(blob, sample.key).finding
    assert finding is not None
    assert finding.seq == 6


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_deleted_record_is_missing(sample: Sample, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(sample.lines) - 2))  # deleting the last is truncation
    lines = sample.lines[:index] + sample.lines[index + 1 :]
    finding = check(b"".join(lines), sample.key).finding
    assert finding is not None
    assert (finding.problem, finding.seq) == (Problem.MISSING, seq_of(sample.lines[index]))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_duplicated_record_is_found(sample: Sample, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(sample.lines) - 1))
    lines = sample.lines[: index + 1] + sample.lines[index:]
    finding = check(b"".join(lines), None).finding
    assert finding is not None
    assert (finding.problem, finding.seq) == (Problem.DUPLICATED, seq_of(sample.lines[index]))


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_any_reordering_is_found(sample: Sample, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(sample.lines) - 2))
    j = data.draw(st.integers(i + 1, len(sample.lines) - 1))
    lines = list(sample.lines)
    lines[i], lines[j] = lines[j], lines[i]
    finding = check(b"".join(lines), sample.key).finding
    assert finding is not None
    assert finding.problem is Problem.REORDERED
    if i > 0:  # (when the very first record moved, the log seems to start late: any earlier seq is named)
        assert finding.seq == seq_of(sample.lines[i])


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_truncation_behind_a_checkpoint_is_detected(sample: Sample, data: st.DataObject) -> None:
    which = data.draw(st.sampled_from(sample.checkpoint_lines))
    trusted = sample.lines[which]
    blob = b"".join(sample.lines)
    end_of_checkpoint = len(b"".join(sample.lines[: which + 1]))
    cut = data.draw(st.integers(0, end_of_checkpoint - 1))
    report = check(blob[:cut], sample.key, trusted)
    assert report.finding is not None
    assert report.finding.problem in {Problem.TRUNCATED, Problem.MISSING}


def test_truncation_without_checkpoint_is_invisible_but_with_one_is_named(sample: Sample) -> None:
    last_cp = sample.checkpoint_lines[-1]
    prefix = b"".join(sample.lines[:last_cp])
    assert check(prefix, sample.key).ok  # why checkpoints must leave the meter
    finding = check(prefix, sample.key, sample.lines[last_cp]).finding
    assert finding is not None
    assert (finding.problem, finding.seq) == (Problem.TRUNCATED, seq_of(sample.lines[last_cp]))


def test_forged_checkpoint_is_refused(sample: Sample) -> None:
    line = sample.lines[sample.checkpoint_lines[0]]
    with pytest.raises(ValueError, match="bad MAC"):
        check(b"".join(sample.lines), bytes(32), line)
