"""Long reads show progress on a terminal (a real pty) and stay quiet on a pipe."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.synthlog import workload, write_log
from meterd.seclog.parts import scan_log
from tests.meterctl import ROOT, meterctl

#: Above the size from which ``log verify`` reads in parallel processes (8 MiB).
RECORDS = 40_000


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("progress")
    log = tmp / "log"
    key = write_log(log, workload(RECORDS))
    key_file = tmp / "key"
    key_file.write_text(key.hex())
    return log, key_file


def _on_a_terminal(*args: str) -> tuple[int, bytes, str]:
    """Run ``meterctl ARGS`` with its standard error on a pty; return exit code, what the pty got, stdout."""
    master, slave = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "meterd.cli.meterctl", *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        cwd=ROOT,
    )
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    out, _ = child.communicate(timeout=120)
    return child.returncode, shown, out.decode()


def test_log_verify_shows_progress_on_a_terminal(big_log: tuple[Path, Path]) -> None:
    log, key_file = big_log
    code, shown, out = _on_a_terminal("log", "verify", "--dir", str(log), "--key-file", str(key_file))
    assert code == 0, out
    assert b"\rverified " in shown
    assert b"\rverified 0 records" not in shown  # drawn once there is something to show
    counts = [int(part.split()[1].replace(b",", b"")) for part in shown.split(b"\r")[1:-1]]
    assert counts == sorted(counts)
    assert 0 < counts[-1] <= RECORDS + 1
    assert shown.endswith(b"\r\x1b[K")  # the line is cleared before the result is printed
    assert out.startswith(f"intact: records 1..{RECORDS + 1} ")


def test_log_verify_is_quiet_on_a_pipe(big_log: tuple[Path, Path]) -> None:
    log, key_file = big_log
    done = meterctl("log", "verify", "--dir", str(log), "--key-file", str(key_file))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_parts_read_in_parallel_report_their_running_total(big_log: tuple[Path, Path]) -> None:
    log, key_file = big_log
    totals: list[int] = []
    report, _ = scan_log(
        log, key=bytes.fromhex(key_file.read_text()), workers=2, min_bytes=0, progress=totals.append
    )
    assert report is not None
    assert totals == sorted(totals)
    assert totals[-1] == RECORDS + 1
