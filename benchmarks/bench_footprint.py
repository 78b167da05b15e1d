"""Start-up cost of meterd: time from start to READY, and resident memory with every channel idle.

Run: ``python benchmarks/bench_footprint.py [--config PATH] [--runs N] [--settle S] [--json] [--quick]
[--as-is]``; ``--quick`` (what ``make test`` runs) is two starts with a short settle.

Each run starts ``meterd --config CONFIG`` with a ``NOTIFY_SOCKET`` this
script owns (a Unix datagram socket, as systemd's ``Type=notify`` provides),
measures the time until the daemon sends ``READY=1``, waits ``--settle``
seconds with no client connected, reads ``VmRSS`` (and the peak, ``VmHWM``)
from ``/proc/PID/status`` and stops it with SIGTERM.  The first run starts on
an empty state directory (it creates the security log and, for the embedded
default, the demo accounts); the later runs are restarts on that state, the
common case, and are reported as a median.

The baseline, measured in the same run: a bare interpreter, and the import
floor of the declared dependencies (``asyncssh, pymodbus, serial,
prometheus_client, cffi``) in a fresh interpreter: no daemon built on them can
start faster or smaller.  The ratios printed last are meterd's restart over
that floor (seconds and MiB in excess of it).

meterd runs as installed: with its modules byte-compiled, as ``pip install``
leaves them and as the dependencies of the floor have theirs.  A checkout run
with ``PYTHONDONTWRITEBYTECODE`` set would otherwise compile every meterd
module from source on every start (about 0.1 s of CPU and 0.5 MiB of heap
here), a cost no installed meter pays; so the script first byte-compiles the
``meterd`` package where it lies (``compileall``: ``__pycache__``, which git
ignores).  ``--as-is`` skips that and measures whatever the environment does.

Without ``--config`` the embedded default (``config/daemon/meterd.toml``) is
used, copied into a scratch directory (its state there) with every TCP port
replaced by a free one, so the benchmark never touches ``./var`` or collides
with a running meterd.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from meterd.seclog.segments import clear_append_only

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "config" / "daemon" / "meterd.toml"
DEPENDENCIES = ("asyncssh", "pymodbus", "serial", "prometheus_client", "cffi")
READY_TIMEOUT = 60.0
RESTART = "meterd restart (to READY), median"
MIB = 1024 * 1024

# Runs in a fresh interpreter: time and memory after importing, measured from inside.
_PROBE = """
import sys, time
t0 = time.perf_counter()
for name in sys.argv[1:]:
    __import__(name)
elapsed = time.perf_counter() - t0
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(elapsed, int(status["VmRSS"].split()[0]) * 1024)
"""


class StartError(Exception):
    """meterd did not reach READY."""


@dataclass
class Sample:
    """One start: seconds from spawn to the event, and resident bytes after it.

    ``cpu`` is the CPU time the process had used by then, a figure that other
    load on the machine inflates far less than the wall time.
    """

    seconds: float
    rss: int
    peak_rss: int = 0
    cpu: float = 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def import_floor(modules: tuple[str, ...]) -> Sample:
    """Spawn an interpreter importing ``modules``; return spawn-to-exit time and RSS after importing."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _PROBE, *modules], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    _, rss = out.stdout.split()
    return Sample(wall, int(rss), cpu=cpu)


def _cpu(pid: int) -> float:
    """CPU seconds used so far by the live threads of ``pid`` (``schedstat``: nanoseconds)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def scratch_config(source: Path, directory: Path) -> Path:
    """Copy ``source`` (the embedded default) and its policy into ``directory``; return the copy's path.

    The copy keeps the checkout's layout (``config/daemon/meterd.toml`` beside
    ``config/policy.toml``), so its relative paths, the demo PKI's included,
    put the state in ``directory/var``; every port is replaced by a free one.
    """
    target = directory / "config" / "daemon" / "meterd.toml"
    target.parent.mkdir(parents=True)
    shutil.copy(source.parent.parent / "policy.toml", target.parent.parent / "policy.toml")
    text = re.sub(r"(?m)^port = \d+", lambda _: f"port = {free_port()}", source.read_text())
    target.write_text(text)
    return target


def meterd_command(config: Path) -> list[str]:
    """The daemon's command line: the installed ``meterd`` script, else the module."""
    script = Path(sys.executable).parent / "meterd"
    if script.exists():
        return [str(script), "--config", str(config)]
    return [sys.executable, "-m", "meterd.daemon.main", "--config", str(config)]


def _memory(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def remove_scratch(directory: Path) -> None:
    """Remove the scratch directory, security-log segments included.

    Run as root, meterd gives its segments the append-only attribute, which
    stops even root's unlink until it is cleared.
    """
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            clear_append_only(path)
    shutil.rmtree(directory, ignore_errors=True)


def byte_compile_meterd() -> None:
    """Byte-compile the ``meterd`` package in place, as installing it would (see the module docstring)."""
    spec = importlib.util.find_spec("meterd")
    if spec is None or not spec.submodule_search_locations:
        return
    package = next(iter(spec.submodule_search_locations))
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True, stdout=subprocess.DEVNULL)


def start_to_ready(config: Path, directory: Path, settle: float) -> Sample:
    """Start meterd once; return time to READY=1 and its memory after ``settle`` idle seconds."""
    address = str(directory / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(address)
        env = {**os.environ, "NOTIFY_SOCKET": address}
        env.pop("WATCHDOG_USEC", None)
        start = time.perf_counter()
        process = subprocess.Popen(
            meterd_command(config), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            notify.settimeout(0.2)
            deadline = start + READY_TIMEOUT
            while True:
                if process.poll() is not None:
                    err = process.stderr.read() if process.stderr else ""
                    raise StartError(f"meterd exited with {process.returncode} before READY:\n{err}")
                if time.perf_counter() > deadline:
                    raise StartError(f"no READY=1 from meterd within {READY_TIMEOUT} s")
                try:
                    message = notify.recv(4096).decode()
                except TimeoutError:
                    continue
                if "READY=1" in message.splitlines():
                    ready = time.perf_counter() - start
                    cpu = _cpu(process.pid)
                    break
            time.sleep(settle)
            rss, peak = _memory(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stderr:
                process.stderr.close()
        Path(address).unlink()
    return Sample(ready, rss, peak, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="meterd.toml to start with, as is")
    parser.add_argument("--runs", type=int, default=5, help="starts to measure (the first on empty state)")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="idle seconds after READY before reading RSS"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="two starts, short settle (a smoke run)")
    parser.add_argument(
        "--as-is",
        action="store_true",
        help="do not byte-compile meterd first (a checkout may then compile it on every start)",
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.settle = 2, 0.5

    rows = {
        "bare interpreter (spawn to exit)": _median([import_floor(()) for _ in range(args.runs)]),
        "import floor of the dependencies (spawn to exit)": _median(
            [import_floor(DEPENDENCIES) for _ in range(args.runs)]
        ),
    }
    failure = ""
    if not args.as_is:
        byte_compile_meterd()
    work = Path(tempfile.mkdtemp(prefix="meterd-bench-"))
    try:
        config = args.config or scratch_config(DEFAULT_CONFIG, work)
        runs = [start_to_ready(config, work, args.settle) for _ in range(args.runs)]
        rows["meterd first start, empty state (to READY)"] = runs[0]
        rows[RESTART] = _median(runs[1:] or runs)
    except StartError as e:
        failure = str(e)  # the baseline is still worth printing
    finally:
        remove_scratch(work)

    floor, restart = rows["import floor of the dependencies (spawn to exit)"], rows.get(RESTART)
    excess = (
        {
            "seconds": restart.seconds - floor.seconds,
            "cpu_seconds": restart.cpu - floor.cpu,
            "mib": (restart.rss - floor.rss) / MIB,
        }
        if restart
        else {}
    )
    if args.json:
        report = {name: asdict(sample) for name, sample in rows.items()}
        print(json.dumps({**report, "restart over the import floor": excess}, indent=2))
    else:
        print(f"{'':52} {'seconds':>8} {'CPU s':>6} {'RSS MiB':>8} {'peak MiB':>9}")
        for name, sample in rows.items():
            peak = f"{sample.peak_rss / MIB:9.1f}" if sample.peak_rss else f"{'':9}"
            print(f"{name:52} {sample.seconds:8.2f} {sample.cpu:6.2f} {sample.rss / MIB:8.1f} {peak}")
        if excess:
            print(
                f"meterd restart over the import floor: {excess['seconds']:+.3f} s to READY "
                f"({excess['cpu_seconds']:+.3f} s of CPU), {excess['mib']:+.1f} MiB idle RSS"
                + (" (as is: not byte-compiled first)" if args.as_is else "")
            )
    if failure:
        sys.exit(failure)


def _median(samples: list[Sample]) -> Sample:
    return Sample(
        statistics.median(s.seconds for s in samples),
        int(statistics.median(s.rss for s in samples)),
        int(statistics.median(s.peak_rss for s in samples)),
        statistics.median(s.cpu for s in samples),
    )


if __name__ == "__main__":
    main()
