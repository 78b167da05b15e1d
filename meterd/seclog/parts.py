"""A log directory checked in parts, in parallel processes, and the parts joined up.

The directory's segments are split at line ends into runs of about equal
bytes, one per worker (:func:`~meterd.seclog.segments.split_lines`); each run
is scanned on its own (:func:`meterd.seclog.scan.scan`, in a forked process
when there is more than one), and :func:`joined` accepts the whole only if
every run passed and each run's first ``prev`` is the previous run's last
digest with seqs following on, and the first run starts the log as the
reference verifier requires.  Anything else returns None: the caller runs the
reference verifier (:func:`meterd.seclog.verify.verify`), which names the
problem.  Forking is for tools (``meterctl``), never the daemon's threads.
"""

from __future__ import annotations

import functools
import gc
import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meterd.seclog.report import VerifyReport
from meterd.seclog.scan import Contents, Span, scan
from meterd.seclog.segments import list_segments, split_lines

#: Below this many bytes of log a second process costs more than it saves.
PARALLEL_MIN_BYTES = 8 << 20
#: Seconds between two progress reports while parts run in other processes.
_POLL = 0.1

#: Each worker's count of records checked, shared with the parent (set in each worker).
_counts: Any = None


def _init_worker(counts: Any, collect: bool) -> None:
    global _counts  # noqa: PLW0603 - the one way a pool's initializer hands a worker state
    _counts = counts
    # Whatever the fork copied is the caller's: its garbage may hold native objects whose
    # finalisers take locks the caller's threads held at the fork, and no thread here will
    # release them.  Frozen, it is never collected in this process (which ends in _exit);
    # the collector was off from the fork until here (see scan_log).
    gc.freeze()
    if collect:
        gc.enable()


def _count(index: int, records: int) -> None:
    _counts[index] = records


def _scan_part(
    index: int, pieces: list[tuple[Path, int, int]], *, key: bytes | None, window: tuple[str, str] | None
) -> tuple[Span, Contents | None]:
    return scan(pieces, key=key, window=window, progress=functools.partial(_count, index))


def joined(spans: list[Span], *, key: bytes | None) -> VerifyReport | None:
    """Return the report of a whole log from its runs' spans, or None.

    None when the runs do not join up into a log the reference verifier would
    pass (run it to learn why).
    """
    if not spans or not all(s.ok and s.records for s in spans):
        return None
    for before, after in itertools.pairwise(spans):
        if after.first_seq != before.last_seq + 1 or after.first_prev != before.last_digest:
            return None
    first = spans[0]
    drops = frozenset().union(*(s.drops for s in spans))
    if first.first_seq > 1 and (first.first_seq - 1, first.first_prev) not in drops:
        return None
    return VerifyReport(
        records=sum(s.records for s in spans),
        first_seq=first.first_seq,
        last_seq=spans[-1].last_seq,
        mac_checked=key is not None,
        checkpoints=sum(s.checkpoints for s in spans),
        anchored=False,
        finding=None,
    )


def merge_contents(parts: list[Contents | None]) -> Contents | None:
    """Return the contents of consecutive runs as one (None if any run's were not counted)."""
    merged: Contents = {}
    for part in parts:
        if part is None:
            return None
        for content, seen in part.items():
            have = merged.get(content)
            if have is None:
                merged[content] = seen
                continue
            have.count += seen.count
            have.last_seq, have.last_time = seen.last_seq, seen.last_time
            if have.each is not None and seen.each is not None:
                have.each += seen.each
    return merged


def scan_log(
    directory: Path,
    *,
    key: bytes | None = None,
    window: tuple[str, str] | None = None,
    workers: int = 1,
    min_bytes: int = PARALLEL_MIN_BYTES,
    progress: Callable[[int], None] | None = None,
) -> tuple[VerifyReport | None, Contents | None]:
    """Check a log directory in up to ``workers`` parallel parts (see the module docstring).

    Args:
        directory: The log directory.
        key: The auditor's initial key.
        window: ``(since, until)`` to count the window's contents (see :func:`~meterd.seclog.scan.scan`).
        workers: Processes to use (1: none forked); fewer below ``min_bytes`` of log.
        min_bytes: Log size from which parts run in parallel.
        progress: Called now and then with the records checked so far, in this process.

    Returns:
        The report when the log verifies (else None), and the contents (None
        unless asked for and counted).

    Raises:
        OSError: A segment could not be read.
    """
    segments = [(path, path.stat().st_size) for _, path in list_segments(directory)]
    if not segments:
        return None, None
    if workers < 2 or sum(size for _, size in segments) < min_bytes:
        pieces = [(path, 0, size) for path, size in segments]
        span, contents = scan(pieces, key=key, window=window, progress=progress)
        return joined([span], key=key), contents
    # Imported here: the package is imported with the configuration, which must stay light.
    import multiprocessing.sharedctypes  # noqa: PLC0415
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

    parts = split_lines(segments, workers)
    counts = multiprocessing.sharedctypes.RawArray("q", len(parts))
    # fork: the workers need nothing but what is imported already.
    context = multiprocessing.get_context("fork")
    collect = gc.isenabled()
    # Off while the workers are forked (all at the first submit), so none collects what it
    # copied before its initializer has frozen it.
    gc.disable()
    try:
        with ProcessPoolExecutor(
            max_workers=len(parts), mp_context=context, initializer=_init_worker, initargs=(counts, collect)
        ) as pool:
            futures = [
                pool.submit(_scan_part, index, part, key=key, window=window)
                for index, part in enumerate(parts)
            ]
            if collect:
                gc.enable()
            results = _gather(futures, counts, progress)
    finally:
        if collect:
            gc.enable()
    report = joined([span for span, _ in results], key=key)
    return report, merge_contents([contents for _, contents in results])


def _gather(futures: list[Any], counts: Any, progress: Callable[[int], None] | None) -> list[Any]:
    from concurrent.futures import FIRST_EXCEPTION, wait  # noqa: PLC0415

    pending = set(futures)
    while pending:
        _, pending = wait(pending, timeout=_POLL, return_when=FIRST_EXCEPTION)
        if progress is not None:
            progress(sum(counts))
    return [future.result() for future in futures]


def cpu_count() -> int:
    """The CPUs this process may use."""
    return len(os.sched_getaffinity(0))
