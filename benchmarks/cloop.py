"""Pure-C timing of the evaluator: the floor for the Python wrapper's batch path.

``run_c_loop`` compiles ``c_loop.c`` with ``native/meterd_eval.c`` into a
temporary directory, hands it the table and the requests as files, and
returns the measured nanoseconds per decision.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from array import array
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
NATIVE_DIR = BENCH_DIR.parent / "native"


def _compiler() -> str:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        raise RuntimeError("no C compiler found (set CC)")
    return compiler


def run_c_loop(table: bytes, requests: list[tuple[int, int, int, int]], rounds: int) -> float:
    """Time ``mtr_decide`` over ``requests`` in a C loop.

    Args:
        table: A compiled table.
        requests: ``(principal, permission, node, channel)`` tuples, each
            field in ``0 .. 2**32 - 1``.
        rounds: How many times to decide the whole list.

    Returns:
        Nanoseconds per decision.

    Raises:
        ValueError: When a request is not a 4-tuple.
        RuntimeError: When compiling or running the harness fails.
    """
    words = array("I" if array("I").itemsize == 4 else "L")
    for request in requests:
        if len(request) != 4:
            raise ValueError("every request must be a 4-tuple")
        words.extend(request)
    with tempfile.TemporaryDirectory(prefix="meterd-cloop-") as tmp:
        work = Path(tmp)
        exe = work / "c_loop"
        table_file = work / "table.bin"
        request_file = work / "requests.bin"
        table_file.write_bytes(table)
        request_file.write_bytes(words.tobytes())
        compile_cmd = [
            _compiler(),
            "-O2",
            "-std=c99",
            f"-I{NATIVE_DIR}",
            str(BENCH_DIR / "c_loop.c"),
            str(NATIVE_DIR / "meterd_eval.c"),
            "-o",
            str(exe),
        ]
        built = subprocess.run(compile_cmd, capture_output=True, text=True, check=False)
        if built.returncode != 0:
            raise RuntimeError(f"compiling the C loop failed:\n{built.stderr}")
        ran = subprocess.run(
            [str(exe), str(table_file), str(request_file), str(rounds)],
            capture_output=True,
            text=True,
            check=False,
        )
        if ran.returncode != 0:
            raise RuntimeError(f"the C loop failed: {ran.stderr.strip()}")
    for line in ran.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "ns_per_decision":
            return float(value)
    raise RuntimeError(f"unexpected C loop output: {ran.stdout!r}")
