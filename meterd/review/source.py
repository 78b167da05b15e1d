"""Reading a log for a review: verify it and collect its usage in one pass.

This is the I/O edge of :mod:`meterd.review`: it reads the log (a directory,
a copied segment or an exported file), verifies it with
:func:`meterd.seclog.verify` and feeds each verified record to a
:class:`~meterd.review.usage.UsageCollector`.  Problems become
:class:`ReviewInputError`, one message each.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TextIO

from meterd.errors import MeterdError
from meterd.policy.model import Policy
from meterd.record import record
from meterd.review.usage import LogUsage, UsageCollector
from meterd.seclog.codec import GENESIS, decode_body, make_body
from meterd.seclog.events import Record
from meterd.seclog.parts import PARALLEL_MIN_BYTES, cpu_count, scan_log
from meterd.seclog.reader import iter_frames, utc_text
from meterd.seclog.report import VerifyReport
from meterd.seclog.scan import Contents
from meterd.seclog.verify import verify_records

#: Seconds between two redraws of a running total.
REDRAW = 0.1


class ReviewInputError(MeterdError):
    """The log or the window cannot be reviewed (missing, does not verify, another meter's, empty)."""


@record
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

    Fed either record by record (:meth:`tick`, redrawn every ``every`` records)
    or with running totals (:meth:`update`, from a reader that counts on its
    own or in other processes: redrawn at most every :data:`REDRAW` seconds,
    and once at the first report).

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
        self._drawn_at = 0.0
        self._shown = False

    def tick(self, _record: Record | None = None) -> None:
        """Count one record; redraw every ``every`` records."""
        self.count += 1
        if self.active and self.count % self.every == 0:
            self._draw(time.monotonic())

    def update(self, count: int) -> None:
        """Show ``count`` records done (a running total)."""
        changed, self.count = count != self.count, count
        now = time.monotonic()
        if self.active and changed and (not self._shown or now - self._drawn_at >= REDRAW):
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.count / max(now - self._start, 1e-9)
        self.stream.write(f"\r{self.label} {self.count:,} records ({rate:,.0f}/s)")
        self.stream.flush()
        self._drawn_at = now
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

    A log directory is read by the verifier's lean pass
    (:func:`meterd.seclog.parts.scan_log`), which counts the window's records
    by distinct content as it checks them; from ``min_bytes`` on it runs in
    ``workers`` processes (default: the CPUs this process may use).  When
    anything is amiss the log is read again record by record, which names the
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
    workers = cpu_count() if workers is None else workers
    found = _read_lean(source, key, window, progress, workers=workers, min_bytes=min_bytes)
    if found is not None:
        if not found.usage.records:
            raise ReviewInputError(f"{source}: no records in the window {_describe(found.usage)}")
        return found
    collector = UsageCollector(*window)
    visit = collector.add if progress is None else _chain(collector.add, progress.tick)
    try:
        report = verify_records(source, key=key, visit=visit)
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
        collector = UsageCollector(*window)
        for frame in iter_frames(source):
            collector.add(frame.record)
    usage = collector.usage
    if not usage.records:
        raise ReviewInputError(f"{source}: no records in the window {_describe(usage)}")
    return ReadLog(usage, report, warning)


def _read_lean(
    source: Path,
    key: bytes | None,
    window: tuple[str, str],
    progress: Progress | None,
    *,
    workers: int,
    min_bytes: int,
) -> ReadLog | None:
    """Read a log directory with the verifier's lean pass; None when it does not pass it."""
    if not source.is_dir():
        return None
    try:
        report, contents = scan_log(
            source,
            key=key,
            window=window,
            workers=workers,
            min_bytes=min_bytes,
            progress=None if progress is None else progress.update,
        )
    except OSError:
        return None
    finally:
        if progress is not None:
            progress.done()
    if report is None or contents is None:
        return None
    return ReadLog(usage_of(contents, window), report)


def usage_of(contents: Contents, window: tuple[str, str]) -> LogUsage:
    """Return the usage of a window counted by content (see :func:`meterd.seclog.scan.scan`).

    Each distinct content is decoded once and counted with its number of
    records; the ones a review lists one by one go record by record, all in
    log order of their first records, as :class:`UsageCollector` wants them.
    """
    runs: list[tuple[int, Record, int, tuple[int, str] | None]] = []
    for content, seen in contents.items():
        record = decode_body(make_body(seen.last_seq, seen.last_time, content, GENESIS))
        if seen.each is None:
            runs.append((seen.first_seq, record, seen.count, (seen.first_seq, seen.first_time)))
        else:
            runs += [(seq, replace(record, seq=seq, time=time), 1, None) for seq, time in seen.each]
    runs.sort(key=lambda run: run[0])
    collector = UsageCollector(*window)
    for _, record, times, first in runs:
        collector.add(record, times, first)
    return collector.usage


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
