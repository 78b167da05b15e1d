"""Security-log throughput and latency, against plain write+fsync and write without fsync.

Run: ``python benchmarks/bench_seclog.py [--records N] [--repeats N] [--dir PATH] [--json] [--check]``
(``--quick``, what ``make test`` runs: 2,000 records, one run per row, short baselines).

Measured in one run on the same file system: one ``write`` + ``fsync`` per
record (the durable baseline), ``write`` alone (the ceiling without
durability), then durable appends through :class:`SecurityLog` with 1, 8 and
64 concurrent appenders, as threads (blocking ``append``) and as asyncio tasks
(``append_async``, the daemon's path), with p50/p99 latency per append, and
verification speed (``meterctl log verify``'s path against the record-by-record
reference verifier, on the same log, in alternating rounds: one process by CPU time,
and the parallel parts by wall time).  The plain baseline writes the same bytes per
record as the appends (a probe measures a frame) and calls ``fdatasync``, as the
syncer does.  Shared storage drifts, so baseline samples are taken
right before and right after each durable run, and each ratio ("x fsync")
is against their mean: the disk's speed while that run was measured.  Each
durable run is repeated (three times by default) and the one with the median
ratio is reported, so one hiccup of the disk neither makes nor breaks a row.
``--check`` exits 1 unless 64 appenders reach at least 10x the baseline rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from meterd.policy.request import Channel, Outcome
from meterd.seclog import EventType, LogConfig, SecurityLog
from meterd.seclog.parts import cpu_count
from meterd.seclog.verify import verify, verify_records

CONFIG = LogConfig(append_only_attr=False, segment_bytes=8 << 20, capacity_bytes=1 << 30)


#: Bytes of one frame as the benchmark's appends write it (set from a probe: the same bytes).
_frame = 420


def bench_plain(directory: Path, count: int, sync: bool) -> float:
    """One ``write`` of a frame's bytes (and ``fdatasync``, the syncer's call) per record."""
    path = directory / f"plain-{sync}-{time.monotonic_ns()}"
    record = b"x" * (_frame - 1) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    start = time.perf_counter()
    for _ in range(count):
        os.write(fd, record)
        if sync:
            os.fdatasync(fd)
    elapsed = time.perf_counter() - start
    os.close(fd)
    path.unlink()
    return count / elapsed


def _append(log: SecurityLog, i: int) -> None:
    log.append(
        EventType.ACCESS_DECISION,
        principal="operator",
        outcome=Outcome.ALLOW,
        channel=Channel.SSH,
        source="192.0.2.10:50022",
        resource="/files/data",
        detail={"n": i},
    )


Bench = Callable[[SecurityLog, int, int], tuple[float, list[float]]]


def bench_threads(log: SecurityLog, appenders: int, per: int) -> tuple[float, list[float]]:
    latencies: list[list[float]] = [[] for _ in range(appenders)]
    barrier = threading.Barrier(appenders + 1)

    def work(mine: list[float]) -> None:
        barrier.wait()
        clock = time.perf_counter
        for i in range(per):
            t = clock()
            _append(log, i)
            mine.append(clock() - t)

    threads = [threading.Thread(target=work, args=(lat,)) for lat in latencies]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return appenders * per / elapsed, [x for lat in latencies for x in lat]


def bench_async(log: SecurityLog, appenders: int, per: int) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def work() -> None:
        clock = time.perf_counter
        for i in range(per):
            t = clock()
            await log.append_async(
                EventType.ACCESS_DECISION,
                principal="operator",
                outcome=Outcome.ALLOW,
                channel=Channel.SSH,
                source="192.0.2.10:50022",
                resource="/files/data",
                detail={"n": i},
            )
            latencies.append(clock() - t)

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(work() for _ in range(appenders)))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    return appenders * per / elapsed, latencies


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3


@dataclass
class Results:
    write_fsync_samples: list[float]
    write_no_fsync_per_s: float = 0.0
    appends: list[dict[str, float | int | str]] = field(default_factory=list)
    frame_bytes: int = 0
    verify_records: int = 0
    verify_per_s: float = 0.0
    verify_reference_per_s: float = 0.0
    #: One process, by CPU time: the lean pass and the reference, each round's ratio.
    verify_single_cpu_per_s: float = 0.0
    verify_reference_cpu_per_s: float = 0.0
    verify_single_ratios: list[float] = field(default_factory=list)
    #: ``meterctl log verify``'s path (parallel parts), wall time, each round's ratio to the reference.
    verify_parallel_ratios: list[float] = field(default_factory=list)

    @property
    def write_fsync_per_s(self) -> float:
        return statistics.median(self.write_fsync_samples)

    def best_ratio(self, appenders: int) -> float:
        """The better kind's (threads or asyncio) ratio to fsync with ``appenders`` appenders."""
        rows = [r for r in self.appends if r["appenders"] == appenders]
        return max(float(r["per_s"]) / float(r["fsync_per_s"]) for r in rows)


def _measure(
    directory: Path, bench: Bench, log: SecurityLog, appenders: int, per: int, repeats: int, baseline: int
) -> tuple[float, float, list[float], list[float]]:
    """Run ``bench`` ``repeats`` times.

    Returns:
        The rate, baseline and latencies of the run with the median ratio, and every run's ratio.
    """
    runs = []
    for _ in range(repeats):
        # Baseline samples around each run: the ratio compares like with like.
        before = bench_plain(directory, baseline, sync=True)
        rate, latencies = bench(log, appenders, per)
        after = bench_plain(directory, baseline, sync=True)
        runs.append((rate / ((before + after) / 2), rate, (before + after) / 2, latencies))
    runs.sort(key=lambda r: r[0])
    _, rate, local, latencies = runs[len(runs) // 2]
    return rate, local, latencies, [r[0] for r in runs]


def run(
    directory: Path,
    records: int,
    repeats: int = 3,
    baseline: int = 300,
    appenders: tuple[int, ...] = (1, 8, 64),
    verify_rounds: bool = True,
) -> Results:
    # The fsync baseline is sampled before, between and after the durable runs:
    # shared storage drifts, and the ratio should compare like with like.
    results = Results([bench_plain(directory, max(200, records // 10), sync=True)])
    results.write_no_fsync_per_s = bench_plain(directory, records, sync=False)
    key = SecurityLog.init(directory / "log", CONFIG)
    with SecurityLog.open(directory / "log", CONFIG) as log:
        # The plain baseline writes the same bytes per record as the appends below.
        global _frame  # noqa: PLW0603 - one setting for every baseline of the run
        used = log.usage_bytes
        bench_threads(log, 1, 50)
        _frame = results.frame_bytes = round((log.usage_bytes - used) / 50)
        for kind, bench in (("threads", bench_threads), ("asyncio", bench_async)):
            for count in appenders:
                total = records // 10 if count == 1 else records
                per = max(1, total // count)
                rate, local, latencies, ratios = _measure(
                    directory, bench, log, count, per, repeats, baseline
                )
                results.write_fsync_samples.append(local)
                results.appends.append(
                    {
                        "kind": kind,
                        "appenders": count,
                        "per_s": rate,
                        "fsync_per_s": local,
                        "p50_ms": _pct(latencies, 0.50),
                        "p99_ms": _pct(latencies, 0.99),
                        "ratios": " ".join(f"{x:.1f}" for x in ratios),
                    }
                )
    if verify_rounds:
        _verify(directory / "log", key, repeats, results)
    return results


def _timed(check: Callable[[], int]) -> tuple[int, float, float]:
    """Run ``check``; return its records, wall seconds and this process's CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    records = check()
    return records, time.perf_counter() - wall, time.process_time() - cpu


def _verify(directory: Path, key: bytes, repeats: int, results: Results) -> None:
    """Verify speed: the reference, one process, and parallel parts, in alternating rounds.

    The machine is shared: each round measures all three back to back, each
    ratio is taken within its round, and the medians are reported.
    """

    def reference() -> int:
        report = verify_records(directory, key=key)
        assert report.ok, report.finding
        return report.records

    def lean(workers: int) -> Callable[[], int]:
        def check() -> int:
            report = verify(directory, key=key, workers=workers)
            assert report.ok, report.finding
            return report.records

        return check

    rows: list[tuple[float, float, float, float, float]] = []
    for _ in range(max(1, repeats)):
        records, ref_wall, ref_cpu = _timed(reference)
        _, _, one_cpu = _timed(lean(1))
        _, par_wall, _ = _timed(lean(cpu_count()))
        rows.append(
            (records / ref_wall, records / ref_cpu, records / one_cpu, ref_cpu / one_cpu, ref_wall / par_wall)
        )
    results.verify_records = records
    results.verify_reference_per_s = statistics.median(r[0] for r in rows)
    results.verify_reference_cpu_per_s = statistics.median(r[1] for r in rows)
    results.verify_single_cpu_per_s = statistics.median(r[2] for r in rows)
    results.verify_single_ratios = [r[3] for r in rows]
    results.verify_parallel_ratios = [r[4] for r in rows]
    results.verify_per_s = results.verify_reference_per_s * statistics.median(results.verify_parallel_ratios)


def _print(results: Results) -> None:
    base = results.write_fsync_per_s
    samples = ", ".join(f"{x:.0f}" for x in results.write_fsync_samples)
    print(f"write + fsync per record : {base:>10.0f} /s  (median of {samples})")
    print(f"write, no fsync          : {results.write_no_fsync_per_s:>10.0f} /s")
    header = f"{'durable appends':<25}{'per s':>11}{'fsync/s':>9}{'x fsync':>9}{'p50 ms':>9}{'p99 ms':>9}"
    print(f"{header}  x fsync of each run")
    for row in results.appends:
        rate, local = float(row["per_s"]), float(row["fsync_per_s"])
        p50, p99 = float(row["p50_ms"]), float(row["p99_ms"])
        print(
            f"  {row['kind']:<8} {row['appenders']:>3} appenders  {rate:>10.0f}"
            f"{local:>9.0f}{rate / local:>9.1f}{p50:>9.2f}{p99:>9.2f}  {row['ratios']}"
        )
    print(f"frame bytes per record   : {results.frame_bytes:>10d}  (the plain baseline writes as many)")
    if not results.verify_records:
        return
    single = sorted(results.verify_single_ratios)
    parallel = sorted(results.verify_parallel_ratios)
    print(
        f"verify, one process (CPU): {results.verify_single_cpu_per_s:>10.0f} records/s "
        f"({results.verify_records} records), {statistics.median(single):.2f}x the record-by-record "
        f"reference ({results.verify_reference_cpu_per_s:.0f} records/s CPU); rounds "
        + " ".join(f"{x:.2f}" for x in single)
    )
    print(
        f"verify, {cpu_count()} processes (wall) : {results.verify_per_s:>10.0f} records/s, "
        f"{statistics.median(parallel):.2f}x the reference "
        f"({results.verify_reference_per_s:.0f} records/s wall); "
        "rounds " + " ".join(f"{x:.2f}" for x in parallel)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Security-log throughput, latency and verify speed.")
    parser.add_argument("--records", type=int, default=40_000, help="appends per concurrent run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the median one is reported")
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary directory)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 unless 64 appenders reach 10x fsync")
    parser.add_argument(
        "--appenders", type=int, nargs="+", default=[1, 8, 64], help="the rows' appender counts"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the verify rounds")
    parser.add_argument("--quick", action="store_true", help="few records, one run per row (a smoke run)")
    args = parser.parse_args(argv)
    baseline = 300
    if args.quick:
        args.records, args.repeats, baseline = 2000, 1, 50
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        results = run(
            Path(tmp), args.records, max(1, args.repeats), baseline, tuple(args.appenders), not args.no_verify
        )
    if args.json:
        print(json.dumps({**asdict(results), "write_fsync_per_s": results.write_fsync_per_s}, indent=1))
    else:
        _print(results)
    return 1 if args.check and 64 in args.appenders and results.best_ratio(64) < 10 else 0


if __name__ == "__main__":
    raise SystemExit(main())
