"""Killing the meter at any instant of a policy apply leaves exactly one complete policy in force."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meterd.daemon.store import PolicyStore
from meterd.seclog import SecurityLog
from meterd.seclog.verify import verify
from tests.daemon.helpers import POLICY_A, POLICY_B

ROOT = Path(__file__).resolve().parents[2]
KILLS = 200
TIME_LIMIT = 240.0


@pytest.mark.slow
def test_kill_during_apply_leaves_one_complete_policy(tmp_path: Path) -> None:
    (tmp_path / "configured.toml").write_text(POLICY_A)
    key = SecurityLog.init(tmp_path / "security-log")
    rng = random.Random(62351)
    started = time.monotonic()
    kills = 0
    while kills < KILLS and time.monotonic() - started < TIME_LIMIT:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.daemon.apply_worker", str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            text=True,
        )
        assert worker.stdout is not None
        assert worker.stderr is not None
        ready = worker.stdout.readline()
        assert ready == "ready\n", worker.stderr.read()
        time.sleep(rng.uniform(0, 0.05))
        worker.kill()
        worker.wait(10)
        worker.stdout.close()
        worker.stderr.close()
        kills += 1
        store = PolicyStore(tmp_path / "policy")
        current = store.current()
        assert current is not None
        assert store.read(current) in (POLICY_A, POLICY_B)
    assert kills >= 50, f"only {kills} kills in {TIME_LIMIT} s"
    with SecurityLog.open(tmp_path / "security-log"):
        pass
    report = verify(tmp_path / "security-log", key=key)
    assert report.finding is None, report.finding
    assert report.mac_checked
