"""Verification finds every single edit, deletion, duplication, reordering and truncation."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterd.policy.request import Outcome
from meterd.seclog import EventType, FullPolicy, LogConfig, SecurityLog
from meterd.seclog.codec import decode_frame, make_frame
from meterd.seclog.reader import iter_lines
from meterd.seclog.segments import segment_name
from meterd.seclog.verify import Problem, VerifyReport, load_anchor, verify

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


def check(data: bytes, key: bytes | None, copy: bytes | None = None) -> VerifyReport:
    """Verify ``data`` as a one-segment log, anchored to the trusted ``copy`` if given."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / segment_name(1)).write_bytes(data)
        anchor = None
        if copy is not None:
            (directory / "trusted").write_bytes(copy)
            anchor = load_anchor(directory / "trusted", key)
        return verify(directory, key=key, anchor=anchor)


def rechain(lines: list[bytes], index: int, edit: Callable[[bytes], bytes]) -> list[bytes]:
    """Edit one record's body and recompute every later link and checksum (MACs stay: they need the key)."""
    frames = [decode_frame(line) for line in lines]
    prev = frames[0].record.prev
    forged = []
    for i, frame in enumerate(frames):
        r = frame.record
        body = edit(frame.body) if i == index else frame.body
        body = body.replace(f'"prev":"{r.prev}"'.encode(), f'"prev":"{prev}"'.encode())
        if r.event is EventType.LOG_CHECKPOINT:  # keep checkpoints self-consistent too
            body = body.replace(str(r.detail["head_digest"]).encode(), prev.encode())
        forged.append(make_frame(body, frame.mac))
        prev = decode_frame(forged[-1]).record.digest
    return forged


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
    forged = rechain(sample.lines, 5, lambda body: body.replace(b'"attempt":3}', b'"attempt":4}'))
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


def _bump_attempt(body: bytes) -> bytes:
    edited = re.sub(rb'"attempt":(\d+)', lambda m: b'"attempt":%d' % (int(m.group(1)) + 100), body)
    assert edited != body
    return edited


def _after_a_checkpoint(sample: Sample) -> int:
    """Index of a copy's head: two records after a checkpoint, with no checkpoint in between."""
    index = sample.checkpoint_lines[-2] + 2
    assert index not in sample.checkpoint_lines
    return index


def test_a_cut_after_the_copys_last_checkpoint_is_truncation(sample: Sample) -> None:
    """An exported copy vouches for every record it holds, not only up to its last checkpoint."""
    head = _after_a_checkpoint(sample)
    copy = b"".join(sample.lines[: head + 1])
    live = b"".join(sample.lines[:head])  # ends after the copy's last checkpoint, before its head
    finding = check(live, sample.key, copy).finding
    assert finding is not None
    assert (finding.problem, finding.seq) == (Problem.TRUNCATED, seq_of(sample.lines[head]))
    assert f"holds records up to {seq_of(sample.lines[head])}" in finding.message


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_log_ending_before_the_copys_head_is_truncated(sample: Sample, data: st.DataObject) -> None:
    head = data.draw(st.integers(1, len(sample.lines) - 1))
    kept = data.draw(st.integers(1, head))
    report = check(b"".join(sample.lines[:kept]), sample.key, b"".join(sample.lines[: head + 1]))
    assert report.finding is not None
    assert (report.finding.problem, report.finding.seq) == (Problem.TRUNCATED, seq_of(sample.lines[kept]))
    assert not report.anchored


def test_a_rewrite_after_the_copys_last_checkpoint_diverges(sample: Sample) -> None:
    """Without the key, a consistent rewrite is caught only by a copy that holds the record."""
    head = _after_a_checkpoint(sample)
    live = b"".join(rechain(sample.lines, head - 1, _bump_attempt))
    assert check(live, None).ok
    finding = check(live, None, b"".join(sample.lines[: head + 1])).finding
    assert finding is not None
    assert (finding.problem, finding.seq) == (Problem.EDITED, seq_of(sample.lines[head]))
    assert "differs from the trusted copy" in finding.message


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_rewrite_of_a_record_the_copy_holds_diverges(sample: Sample, data: st.DataObject) -> None:
    edited = data.draw(st.sampled_from([i for i, line in enumerate(sample.lines) if b'"attempt"' in line]))
    head = data.draw(st.integers(edited, len(sample.lines) - 1))
    live = b"".join(rechain(sample.lines, edited, _bump_attempt))
    finding = check(live, None, b"".join(sample.lines[: head + 1])).finding
    assert finding is not None
    assert (finding.problem, finding.seq) == (Problem.EDITED, seq_of(sample.lines[head]))


def test_a_longer_log_agrees_with_an_older_copy(sample: Sample) -> None:
    for head in (0, _after_a_checkpoint(sample), len(sample.lines) - 1):
        report = check(b"".join(sample.lines), sample.key, b"".join(sample.lines[: head + 1]))
        assert report.ok, report.finding
        assert report.anchored


ROTATING = LogConfig(
    append_only_attr=False, segment_bytes=4096, capacity_bytes=16384, full_policy=FullPolicy.DROP_OLDEST
)


def test_a_rotated_continuation_of_a_copy_verifies_while_it_can_vouch(tmp_path: Path) -> None:
    """Dropping the copy's oldest records is rotation; the copy must still reach into the log."""
    directory = tmp_path / "log"
    key = SecurityLog.init(directory, ROTATING)
    collected: dict[int, bytes] = {}  # what a collector received, record by record
    with SecurityLog.open(directory, ROTATING) as log:
        for _ in range(10):
            fill(log, 10)
            collected.update((seq_of(line.data), line.data) for line in iter_lines(directory))
    first = verify(directory, key=key).first_seq
    assert first > 20  # rotated well past the start
    copy = tmp_path / "copy.log"

    def against(head: int) -> VerifyReport:
        copy.write_bytes(b"".join(collected[seq] for seq in range(1, head + 1)))
        return verify(directory, key=key, anchor=load_anchor(copy, key))

    for head in (first + 5, first, first - 1):  # the copy's head held, or the record just before the log
        report = against(head)
        assert report.ok, (head, report.finding)
        assert report.anchored
    finding = against(first - 2).finding
    assert finding is not None
    assert (finding.problem, finding.seq) == (Problem.MISSING, first - 1)
    assert "use a newer copy" in finding.message
    forged = rechain(
        [collected[s] for s in range(1, first)], first - 2, lambda b: b.replace(b'"pr":"', b'"pr":"x')
    )
    copy.write_bytes(b"".join(forged))
    finding = verify(directory, key=key, anchor=load_anchor(copy)).finding
    assert finding is not None
    assert (finding.problem, finding.seq) == (Problem.EDITED, first)
    assert "does not follow record" in finding.message


def test_the_packages_verify_is_the_function_whoever_loaded_the_verifier_first() -> None:
    # The verifier loads on first use; importing its module first must not rename the function.
    probe = (
        "import sys, meterd.seclog\n"
        "assert 'meterd.seclog.verify' not in sys.modules\n"
        "from meterd.seclog.verify import VerifyReport\n"
        "from meterd.seclog import verify\n"
        "import meterd.seclog as package\n"
        "assert callable(verify) and verify is package.verify and verify.__name__ == 'verify'\n"
        "assert package.VerifyReport is VerifyReport\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)
