"""Security-log throughput and latency, against plain write+fsync and write without fsync.

Run: ``python benchmarks/bench_seclog.py [--records N] [--repeats N] [--dir PATH] [--json] [--check]``
(``--quick``, what ``make test`` runs: 2,000 records, one run per row, short baselines).

Measured in one run on the same file system: one ``write`` + ``fsync`` per
record (the durable baseline), ``write`` alone (the ceiling without
durability), then durable appends through :class:`SecurityLog` with 1, 8 and
64 concurrent appenders, as threads (blocking ``append``) and as asyncio tasks
(``append_async``, the daemon's path), with p50/p99 latency per append, and
verification speed (``meterctl log verify``'s path against the record-by-record
reference verifier, on the same log).  Shared storage drifts, so baseline samples are taken
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

RECORD = b"x" * 420 + b"\n"  # about the size of a frame
CONFIG = LogConfig(append_only_attr=False, segment_bytes=8 << 20, capacity_bytes=1 << 30)


def bench_plain(directory: Path, count: int, sync: bool) -> float:
    path = directory / f"plain-{sync}-{time.monotonic_ns()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    start = time.perf_counter()
    for _ in range(count):
        os.write(fd, RECORD)
        if sync:
            os.fsync(fd)
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
    verify_records: int = 0
    verify_per_s: float = 0.0
    verify_reference_per_s: float = 0.0

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


def run(directory: Path, records: int, repeats: int = 3, baseline: int = 300) -> Results:
    # The fsync baseline is sampled before, between and after the durable runs:
    # shared storage drifts, and the ratio should compare like with like.
    results = Results([bench_plain(directory, max(200, records // 10), sync=True)])
    results.write_no_fsync_per_s = bench_plain(directory, records, sync=False)
    key = SecurityLog.init(directory / "log", CONFIG)
    with SecurityLog.open(directory / "log", CONFIG) as log:
        for kind, bench in (("threads", bench_threads), ("asyncio", bench_async)):
            for appenders in (1, 8, 64):
                total = records // 10 if appenders == 1 else records
                per = max(1, total // appenders)
                rate, local, latencies, ratios = _measure(
                    directory, bench, log, appenders, per, repeats, baseline
                )
                results.write_fsync_samples.append(local)
                results.appends.append(
                    {
                        "kind": kind,
                        "appenders": appenders,
                        "per_s": rate,
                        "fsync_per_s": local,
                        "p50_ms": _pct(latencies, 0.50),
                        "p99_ms": _pct(latencies, 0.99),
                        "ratios": " ".join(f"{x:.1f}" for x in ratios),
                    }
                )
    # The reference verifier (record by record, as every verify ran before the lean pass),
    # then ``meterctl log verify``'s path, on the same log.
    start = time.perf_counter()
    report = verify_records(directory / "log", key=key)
    elapsed = time.perf_counter() - start
    assert report.ok, report.finding
    results.verify_records = report.records
    results.verify_reference_per_s = report.records / elapsed
    start = time.perf_counter()
    report = verify(directory / "log", key=key, workers=cpu_count())
    elapsed = time.perf_counter() - start
    assert report.ok, report.finding
    results.verify_per_s = report.records / elapsed
    return results


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
    rate, reference = results.verify_per_s, results.verify_reference_per_s
    print(
        f"verify (with key)        : {rate:>10.0f} records/s ({results.verify_records} records), "
        f"{rate / reference:.1f}x the record-by-record reference ({reference:.0f} records/s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Security-log throughput, latency and verify speed.")
    parser.add_argument("--records", type=int, default=40_000, help="appends per concurrent run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the median one is reported")
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary directory)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 unless 64 appenders reach 10x fsync")
    parser.add_argument("--quick", action="store_true", help="few records, one run per row (a smoke run)")
    args = parser.parse_args(argv)
    baseline = 300
    if args.quick:
        args.records, args.repeats, baseline = 2000, 1, 50
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        results = run(Path(tmp), args.records, max(1, args.repeats), baseline)
    if args.json:
        print(json.dumps({**asdict(results), "write_fsync_per_s": results.write_fsync_per_s}, indent=1))
    else:
        _print(results)
    return 1 if args.check and results.best_ratio(64) < 10 else 0


if __name__ == "__main__":
    raise SystemExit(main())
