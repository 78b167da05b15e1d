"""Reading a log for a review: verify it and collect its usage in one pass.

This is the I/O edge of :mod:`meterd.review`: it reads the log (a directory,
a copied segment or an exported file), verifies it with
:func:`meterd.seclog.verify` and feeds each verified record to a
:class:`~meterd.review.usage.UsageCollector`.  Problems become
:class:`ReviewInputError`, one message each.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from meterd.errors import MeterdError
from meterd.policy.model import Policy
from meterd.review.usage import LogUsage, UsageCollector, merge_usage
from meterd.seclog.events import Record
from meterd.seclog.reader import iter_frames, utc_text
from meterd.seclog.segments import list_segments, split_lines
from meterd.seclog.verify import Span, VerifyReport, joined, verify, verify_span

#: Below this many bytes of log a second process costs more than it saves.
PARALLEL_MIN_BYTES = 8 << 20


class ReviewInputError(MeterdError):
    """The log or the window cannot be reviewed (missing, does not verify, another meter's, empty)."""


@dataclass(frozen=True, slots=True)
class ReadLog:
    """A verified (or knowingly unverified) log window.

    Attributes:
        usage: What the window holds.
        report: The verification report of the whole log.
        warning: Non-empty when the log did not verify and the caller chose to go on.
    """

    usage: LogUsage
    report: VerifyReport
    warning: str = ""


class Progress:
    """A one-line progress display on a terminal; silent when ``stream`` is not one.

    Args:
        label: What is being counted, e.g. ``verified``.
        stream: Where to write (standard error by default).
        every: Records between two updates.
    """

    def __init__(self, label: str, stream: TextIO | None = None, every: int = 50_000) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.active = self.stream.isatty()
        self.label = label
        self.every = every
        self.count = 0
        self._start = time.monotonic()
        self._shown = False

    def tick(self, _record: Record | None = None) -> None:
        """Count one record; redraw every ``every`` records."""
        self.count += 1
        if self.active and self.count % self.every == 0:
            rate = self.count / max(time.monotonic() - self._start, 1e-9)
            self.stream.write(f"\r{self.label} {self.count:,} records ({rate:,.0f}/s)")
            self.stream.flush()
            self._shown = True

    def done(self) -> None:
        """Clear the line, if anything was shown."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def window_text(moment: datetime | None) -> str:
    """Return a window bound in the log's time format (naive = UTC), or empty."""
    return utc_text(moment) if moment is not None else ""


def _chain(*calls: Callable[[Record], None]) -> Callable[[Record], None]:
    def both(record: Record) -> None:
        for call in calls:
            call(record)

    return both


def read_log(
    source: Path,
    *,
    key: bytes | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    go_on_unverified: bool = False,
    progress: Progress | None = None,
    workers: int | None = None,
    min_bytes: int = PARALLEL_MIN_BYTES,
) -> ReadLog:
    """Verify ``source`` and return the usage of the window, in one pass when it verifies.

    A log directory of at least ``min_bytes`` is split at record boundaries
    into ``workers`` parts (default: the CPUs this process may use), each
    verified and counted in its own process; the parts' links are then
    checked to join up (see :func:`meterd.seclog.verify.joined`).  When
    anything is amiss the log is read again in one pass, which names the
    problem exactly as ``meterctl log verify`` does.

    Raises:
        ReviewInputError: No such log; it does not verify (unless
            ``go_on_unverified``); the window holds no records.
    """
    if not source.exists():
        raise ReviewInputError(f"{source}: no such log")
    if since is not None and until is not None and window_text(since) >= window_text(until):
        raise ReviewInputError("--since must be before --until")
    window = (window_text(since), window_text(until))
    found = _read_parallel(source, key, window, workers=workers, min_bytes=min_bytes)
    if found is not None:
        if not found.usage.records:
            raise ReviewInputError(f"{source}: no records in the window {_describe(found.usage)}")
        return found
    collector = UsageCollector(window_text(since), window_text(until))
    visit = collector.add if progress is None else _chain(collector.add, progress.tick)
    try:
        report = verify(source, key=key, visit=visit)
    except OSError as e:
        raise ReviewInputError(f"{source}: {e.strerror or e}") from None
    finally:
        if progress is not None:
            progress.done()
    warning = ""
    f = report.finding
    if f is not None:
        problem = f"seq {f.seq}: {f.problem.value}: {f.message}"
        if report.mac_checked and f.problem.value == "bad MAC" and f.seq == report.first_seq:
            problem += " (a log from another meter, or the wrong key)"
        if not go_on_unverified:
            raise ReviewInputError(
                f"{source}: the log does not verify ({problem}); nothing reviewed "
                "(--allow-unverified goes on anyway, with a warning)"
            )
        warning = f"WARNING: the log does not verify ({problem}); figures below are NOT trustworthy"
        # Verification stopped at the problem: read every decodable record instead.
        collector = UsageCollector(window_text(since), window_text(until))
        for frame in iter_frames(source):
            collector.add(frame.record)
    usage = collector.usage
    if not usage.records:
        raise ReviewInputError(f"{source}: no records in the window {_describe(usage)}")
    return ReadLog(usage, report, warning)


def _read_part(
    pieces: list[tuple[Path, int, int]], *, key: bytes | None, window: tuple[str, str]
) -> tuple[Span, LogUsage]:
    collector = UsageCollector(*window)
    return verify_span(pieces, key=key, visit=collector.add), collector.usage


def _read_parallel(
    source: Path, key: bytes | None, window: tuple[str, str], *, workers: int | None, min_bytes: int
) -> ReadLog | None:
    """Read a log directory in parts in parallel; None when not worth it or it does not verify."""
    if workers is None:
        workers = len(os.sched_getaffinity(0))
    if workers < 2 or not source.is_dir():
        return None
    try:
        segments = [(path, path.stat().st_size) for _, path in list_segments(source)]
        if not segments or sum(size for _, size in segments) < min_bytes:
            return None
        parts = split_lines(segments, workers)
        # fork: the workers need nothing but this module, already imported.
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=len(parts), mp_context=context) as pool:
            results = list(pool.map(functools.partial(_read_part, key=key, window=window), parts))
    except OSError:
        return None
    report = joined([span for span, _ in results], key=key)
    if report is None:
        return None
    return ReadLog(merge_usage([usage for _, usage in results]), report)


def _describe(usage: LogUsage) -> str:
    return f"[{usage.since or 'start'}, {usage.until or 'end'})"


def check_same_meter(policy: Policy, usage: LogUsage) -> None:
    """Refuse a log none of whose named principals the policy knows: another meter's log.

    A meter's log names its own users and applications; a window where
    principals were recorded as users or applications and not one of them is
    in the policy belongs to another meter (or the wrong policy was given).

    Raises:
        ReviewInputError: The log and the policy share no principal.
    """
    known = set(policy.users) | set(policy.applications)
    named = {name for name, _ in usage.uses} | set(usage.logins) | {name for name, _ in usage.refusals}
    named -= {"anonymous", "meterd"}
    if named and not named & known:
        sample = ", ".join(sorted(named)[:5])
        raise ReviewInputError(
            f"the log names none of the policy's principals (it names {sample}): "
            "a log from another meter, or the wrong policy"
        )
