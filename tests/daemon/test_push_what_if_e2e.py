"""``meterctl policy push --dry-run --log``: the meter's dry run plus the what-if over a fetched log copy."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from tests.daemon.conftest import RunningDaemon, keypair, policy_with, start_with_admin_key
from tests.meterctl import admin_remote, meterctl

StartDaemon = Callable[[Path], RunningDaemon]


def fetch_log(log: Path, copy: Path) -> None:
    """Copy a live log once it is quiet (sizes unchanged and every segment ends with a whole record)."""
    last: list[int] = []
    for _ in range(50):
        segments = sorted(log.glob("seg-*.log"))
        sizes = [p.stat().st_size for p in segments]
        if sizes == last and all(p.read_bytes().endswith(b"\n") for p in segments):
            break
        last = sizes
        time.sleep(0.2)
    shutil.copytree(log, copy)


def test_push_dry_run_shows_what_the_candidate_would_change(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    daemon, key, public, port = start_with_admin_key(tmp_path, start_daemon)
    remote = admin_remote(key, port)
    same = tmp_path / "same.toml"
    same.write_text(policy_with(public, "operator"))
    # rbacmnt's push above is the work the log holds; the candidate hands user management to another
    # user (with a key of its own: a handover to nobody who can log in is refused outright).
    (tmp_path / "newadmin").mkdir()
    _, newadmin_key = keypair(tmp_path / "newadmin")
    handover = tmp_path / "handover.toml"
    handover.write_text(
        policy_with(public, "operator").replace('roles = ["rbacmnt"]', 'roles = ["viewer"]')
        + f'\n[users.newadmin]\nroles = ["rbacmnt"]\nssh_keys = ["{newadmin_key}"]\n'
    )
    assert meterctl("policy", "push", str(same), *remote, "--dry-run").returncode == 0
    copy = tmp_path / "fetched-log"
    fetch_log(daemon.state_dir / "security-log", copy)

    unchanged = meterctl("policy", "push", str(same), *remote, "--dry-run", "--log", str(copy))
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    assert unchanged.stdout.splitlines()[0] == "dry run: nothing applied"
    assert "would lose used access (0):" in unchanged.stdout

    losing = meterctl("policy", "push", str(handover), *remote, "--dry-run", "--log", str(copy))
    assert losing.returncode == 1, losing.stdout + losing.stderr
    out = losing.stdout
    assert out.splitlines()[0] == "dry run: nothing applied"
    assert "- rbacmnt: user_management @ /" in out  # the meter's own dry run (its exit code: 0)
    assert "would lose used access (1):" in out
    assert "  rbacmnt user_management on ssh: 1 requests" in out

    # --log is for a dry run only; a log that does not verify stops before the meter is asked.
    applying = meterctl("policy", "push", str(handover), *remote, "--log", str(copy))
    assert applying.returncode == 2
    assert "add --dry-run" in applying.stderr
    segment = next(copy.glob("seg-*.log"))
    data = bytearray(segment.read_bytes())
    data[data.index(b'"pr":"rbacmnt"') + 6] ^= 0x01
    segment.write_bytes(bytes(data))
    broken = meterctl("policy", "push", str(handover), *remote, "--dry-run", "--log", str(copy))
    assert broken.returncode == 2
    assert "does not verify" in broken.stderr
    assert "dry run" not in broken.stdout
    assert (daemon.state_dir / "policy" / "current").read_text().strip() == "1"
    assert daemon.stop()[0] == 0
