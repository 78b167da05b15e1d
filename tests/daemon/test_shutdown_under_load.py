"""SIGTERM while SSH clients are logging in and running commands: a bounded stop, an intact log."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from meterd.seclog.keys import parse_key
from meterd.seclog.verify import verify
from tests.daemon.conftest import RunningDaemon, start_with_admin_key

StartDaemon = Callable[[Path], RunningDaemon]
CLIENTS = 6
PER_CLIENT = 40
SHUTDOWN_BOUND = 10.0  # the config's shutdown_timeout (5 s) plus start-up of the stop path


def test_sigterm_under_load_stops_in_bound_with_log_intact(tmp_path: Path, start_daemon: StartDaemon) -> None:
    daemon, key, _public, port = start_with_admin_key(tmp_path, start_daemon)
    command = [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=5",
        "-i",
        str(key),
        "-p",
        str(port),
        "rbacmnt@127.0.0.1",
        "whoami",
    ]
    done = {"ok": 0, "failed": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        for _ in range(PER_CLIENT):
            if stop.is_set():
                return
            result = subprocess.run(command, capture_output=True, timeout=30, check=False)
            with lock:
                done["ok" if result.returncode == 0 else "failed"] += 1

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while done["ok"] < 2 * CLIENTS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert done["ok"] >= 2 * CLIENTS, done
    code, took = daemon.stop(timeout=SHUTDOWN_BOUND + 5)
    stop.set()
    for thread in threads:
        thread.join(60)
    assert code == 0
    assert took < SHUTDOWN_BOUND, f"stopping took {took:.1f} s"
    initial = parse_key((daemon.state_dir / "security-log-initial-key").read_text().strip())
    report = verify(daemon.state_dir / "security-log", key=initial)
    assert report.finding is None, report.finding
    assert report.records > 4 * CLIENTS
