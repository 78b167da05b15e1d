"""Access review speed: records per second for ``log verify``, ``policy review`` and ``policy what-if``.

Run: ``python benchmarks/bench_review.py [--records N] [--quick] [--json]``.

Writes one synthetic, valid log (:mod:`benchmarks.synthlog`, 1,000,000
records by default; ``--quick`` uses 20,000) and, on that same log in one
run, times: verification alone (what ``meterctl log verify --key-file``
does), the review (verify and collect usage in one pass, then findings) and
the what-if (the same pass, then one native batch over the distinct
requests); verification runs first and last, and the better run is the
baseline review and what-if are compared with.  The target is a what-if
over 1,000,000 records in at most 5 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.synthlog import workload, write_log
from meterd.policy.compile import compile_policy
from meterd.policy.files import read_policy_text
from meterd.review.findings import review
from meterd.review.source import read_log
from meterd.review.whatif import what_if
from meterd.seclog.parts import cpu_count
from meterd.seclog.verify import verify

POLICY = """
[users.alice]
roles = ["viewer"]
[users.bob]
roles = ["engineer"]
[users.carol]
roles = ["operator"]
[users.dave]
roles = ["secaud"]
[applications.scada]
roles = ["viewer"]
"""
CANDIDATE = POLICY.replace('roles = ["engineer"]', 'roles = ["viewer"]')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20,000 records")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    count = 20_000 if args.quick else args.records
    policy = read_policy_text(POLICY, "bench")
    candidate = compile_policy(read_policy_text(CANDIDATE, "candidate"))
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log"
        start = time.perf_counter()
        key = write_log(log, workload(count))
        results["write_s"] = time.perf_counter() - start

        start = time.perf_counter()
        report = verify(log, key=key, workers=cpu_count())  # what ``meterctl log verify`` runs
        results["verify_s"] = time.perf_counter() - start
        if not report.ok:
            raise SystemExit(f"generated log does not verify: {report.finding}")

        start = time.perf_counter()
        read = read_log(log, key=key)
        review(policy, read.usage)
        results["review_s"] = time.perf_counter() - start

        start = time.perf_counter()
        read = read_log(log, key=key)
        result = what_if(read.usage, candidate)
        results["what_if_s"] = time.perf_counter() - start

        # Verify again last: the better of its two runs is the baseline (shared cores drift).
        start = time.perf_counter()
        verify(log, key=key, workers=cpu_count())
        results["verify_s"] = min(results["verify_s"], time.perf_counter() - start)
        records = report.records
    rates = {name.removesuffix("_s"): records / seconds for name, seconds in results.items()}
    if args.json:
        print(json.dumps({"records": records, "seconds": results, "records_per_s": rates}))
        return
    print(f"records: {records:,} ({result.replayed:,} decisions replayed, {result.distinct} distinct)")
    for name, seconds in results.items():
        label = name.removesuffix("_s")
        against = "" if label in ("write", "verify") else f"  {rates[label] / rates['verify']:.2f}x verify"
        print(f"{label:>8}: {seconds:7.2f} s  {rates[label]:>10,.0f} records/s{against}")
    per_million = 1_000_000 / rates["what_if"]
    print(f"what-if over 1,000,000 records at this rate: {per_million:.2f} s (target: at most 5 s)")


if __name__ == "__main__":
    main()
