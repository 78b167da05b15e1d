"""Reading a log in parts in parallel gives exactly what one pass gives, or falls back to it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from benchmarks.synthlog import workload, write_log
from meterd.review.source import ReviewInputError, read_log
from meterd.seclog.codec import GENESIS
from meterd.seclog.segments import segment_name
from meterd.seclog.verify import Span, joined


def _log(tmp_path: Path, segments: int) -> tuple[Path, bytes]:
    log = tmp_path / "log"
    key = write_log(log, workload(3000))
    if segments > 1:
        # The chain runs on across segments: cut the one file into several at line ends.
        lines = (log / segment_name(1)).read_bytes().splitlines(keepends=True)
        step = len(lines) // segments + 1
        for n in range(segments):
            (log / segment_name(n + 1)).write_bytes(b"".join(lines[n * step : (n + 1) * step]))
    return log, key


@pytest.mark.parametrize(("segments", "workers"), [(1, 2), (3, 2), (3, 5)])
def test_parts_read_as_one_pass(tmp_path: Path, segments: int, workers: int) -> None:
    log, key = _log(tmp_path, segments)
    one = read_log(log, key=key, workers=1)
    parts = read_log(log, key=key, workers=workers, min_bytes=0)
    assert parts.report == one.report
    assert parts.usage == one.usage
    assert one.usage.records == 3001
    since = read_log(log, key=key, since=_at(one.usage.last_time), workers=1)
    assert read_log(log, key=key, since=_at(one.usage.last_time), workers=workers, min_bytes=0) == since


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("where", [0.25, 0.75])
def test_a_problem_in_any_part_is_named_as_one_pass_names_it(tmp_path: Path, where: float) -> None:
    log, key = _log(tmp_path, 1)
    segment = log / segment_name(1)
    data = bytearray(segment.read_bytes())
    at = data.index(b'"pr":"', int(len(data) * where)) + 6
    data[at] ^= 0x01
    segment.write_bytes(bytes(data))
    with pytest.raises(ReviewInputError) as one:
        read_log(log, key=key, workers=1)
    with pytest.raises(ReviewInputError) as parts:
        read_log(log, key=key, workers=2, min_bytes=0)
    assert str(parts.value) == str(one.value)
    assert "does not verify" in str(one.value)


def test_a_record_cut_out_near_the_split_is_caught(tmp_path: Path) -> None:
    log, _ = _log(tmp_path, 1)
    segment = log / segment_name(1)
    lines = segment.read_bytes().splitlines(keepends=True)
    del lines[len(lines) // 2]
    segment.write_bytes(b"".join(lines))
    with pytest.raises(ReviewInputError, match="missing"):
        read_log(log, workers=2, min_bytes=0)


def test_parts_that_do_not_link_up_do_not_join() -> None:
    """Each part verified on its own; only the join can show a record cut out between them."""
    first = Span(True, 10, 1, GENESIS, 10, "a" * 64, 0, frozenset())
    assert joined([first, Span(True, 5, 11, "a" * 64, 15, "b" * 64, 0, frozenset())], key=None) is not None
    assert joined([first, Span(True, 5, 12, "a" * 64, 16, "b" * 64, 0, frozenset())], key=None) is None
    assert joined([first, Span(True, 5, 11, "c" * 64, 15, "b" * 64, 0, frozenset())], key=None) is None
    # A log starting after record 1 needs the drop record that vouches for its start.
    late = Span(True, 5, 11, "a" * 64, 15, "b" * 64, 0, frozenset())
    assert joined([late], key=None) is None
    assert joined([Span(True, 5, 11, "a" * 64, 15, "b" * 64, 0, frozenset({(10, "a" * 64)}))], key=None)
