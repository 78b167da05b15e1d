"""The lean pass passes a log only when the reference verifier does, and then reports the same."""

from __future__ import annotations

import gc
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterd.policy.request import Outcome
from meterd.seclog import EventType, LogConfig, SecurityLog, parts
from meterd.seclog.codec import decode_frame, make_frame
from meterd.seclog.parts import scan_log
from meterd.seclog.report import VerifyReport
from meterd.seclog.segments import list_segments
from meterd.seclog.verify import verify_records

from .conftest import fill


@dataclass(frozen=True)
class Sample:
    key: bytes
    segments: list[bytes]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    directory = tmp_path_factory.mktemp("scan") / "log"
    config = LogConfig(append_only_attr=False, checkpoint_interval=8, segment_bytes=4096)
    key = SecurityLog.init(directory, config)
    with SecurityLog.open(directory, config) as log:
        fill(log, 40)
        log.append(EventType.ALARM, principal="meterd", outcome=Outcome.ERROR, detail={"text": "é"})
    segments = [path.read_bytes() for _, path in list_segments(directory)]
    assert len(segments) > 2
    return Sample(key, segments)


def both(segments: list[bytes], key: bytes | None, workers: int) -> tuple[VerifyReport | None, VerifyReport]:
    """The lean pass's report (None: not passed) and the reference's, on the same log."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for n, data in enumerate(segments, 1):
            (directory / f"seg-{n:08d}.log").write_bytes(data)
        lean, _ = scan_log(directory, key=key, workers=workers, min_bytes=0)
        return lean, verify_records(directory, key=key)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_an_intact_log_is_reported_alike(sample: Sample, workers: int) -> None:
    for key in (sample.key, None):
        lean, reference = both(sample.segments, key, workers)
        assert reference.ok
        assert lean == reference


def _lines(sample: Sample) -> list[list[bytes]]:
    return [data.splitlines(keepends=True) for data in sample.segments]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), with_key=st.booleans(), workers=st.sampled_from([1, 2]))
def test_the_lean_pass_never_passes_what_the_reference_fails(
    sample: Sample, data: st.DataObject, with_key: bool, workers: int
) -> None:
    segments = _lines(sample)
    index = data.draw(st.integers(0, len(segments) - 1))
    lines = segments[index]
    at = data.draw(st.integers(0, len(lines) - 1))
    change = data.draw(
        st.sampled_from(["flip", "delete", "duplicate", "swap", "tear", "reseal", "wrong key"])
    )
    key = sample.key if with_key else None
    if change == "flip":
        line = bytearray(lines[at])
        line[data.draw(st.integers(0, len(line) - 1))] ^= data.draw(st.integers(1, 255))
        lines[at] = bytes(line)
    elif change == "delete":
        del lines[at]
    elif change == "duplicate":
        lines.insert(at, lines[at])
    elif change == "swap":
        other = data.draw(st.integers(0, len(lines) - 1))
        lines[at], lines[other] = lines[other], lines[at]
    elif change == "tear":
        lines[at] = lines[at][: data.draw(st.integers(0, len(lines[at]) - 1))]
    elif change == "reseal":
        # A consistent edit (checksum recomputed, MAC kept): only the MAC and the next link catch it.
        frame = decode_frame(lines[at])
        lines[at] = make_frame(frame.body.replace(b'"pr":"', b'"pr":"x', 1), frame.mac)
    else:
        key = bytes(32)
    lean, reference = both([b"".join(seg) for seg in segments], key, workers)
    if lean is not None:
        assert reference.ok
        assert lean == reference
    else:
        assert not reference.ok


@pytest.mark.parametrize(
    "ts", [b"2026-01-05T08:00:00.00000\x01Z", b'2026-01-05T08:00:00.00000"Z', b"2026-01-05T08:00:00Z"]
)
@pytest.mark.parametrize("workers", [1, 2])
def test_a_time_outside_the_writers_layout_is_left_to_the_reference(
    sample: Sample, ts: bytes, workers: int
) -> None:
    # The last record (not the closing checkpoint, which is read in full): no later link or
    # key check would catch the consistent edit.
    segments = _lines(sample)
    del segments[-1][-1]
    frame = decode_frame(segments[-1][-1])
    start = frame.body.index(b'"ts":"') + 6
    body = frame.body[:start] + ts + frame.body[frame.body.index(b'"', start) :]
    segments[-1][-1] = make_frame(body, frame.mac)
    lean, reference = both([b"".join(seg) for seg in segments], None, workers)
    if reference.ok:  # a readable time in another layout: the reference passes it
        assert lean is None or lean == reference
    else:
        assert lean is None


class _Garbage:
    """Half of a reference cycle whose finaliser notes the process that ran it."""

    def __init__(self, marks: Path) -> None:
        self.marks = marks
        self.other: _Garbage | None = None

    def __del__(self) -> None:
        with self.marks.open("a") as out:
            out.write(f"{os.getpid()}\n")


def test_a_forked_part_never_collects_the_callers_garbage(
    sample: Sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A caller with threads (a test process holding a log's syncer, say) may leave garbage
    # whose finaliser takes a lock one of those threads held at the fork: collected in
    # the child, it would wait forever.  The child's collector runs here on demand.
    real_scan = parts.scan  # type: ignore[attr-defined]  # the name the workers call

    def scan_after_collecting(*args: Any, **kwargs: Any) -> Any:
        gc.collect()
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(parts, "scan", scan_after_collecting)
    marks = tmp_path / "finalised-by"
    gc.collect()
    gc.disable()  # the cycle must still be uncollected when the workers fork
    try:
        first, second = _Garbage(marks), _Garbage(marks)
        first.other, second.other = second, first
        del first, second
        lean, reference = both(sample.segments, sample.key, 2)
    finally:
        gc.enable()
    gc.collect()
    assert reference.ok
    assert lean == reference
    assert marks.read_text().split() == [str(os.getpid())] * 2
