"""``meterctl policy push|rollback`` against a running meterd, over the real OpenSSH client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from meterd.seclog import EventType, Query, read_records
from tests.daemon.conftest import RunningDaemon, policy_with, start_with_admin_key
from tests.meterctl import admin_remote, meterctl

StartDaemon = Callable[[Path], RunningDaemon]


def test_push_dry_run_refusal_and_rollback(tmp_path: Path, start_daemon: StartDaemon) -> None:
    daemon, key, public, port = start_with_admin_key(tmp_path, start_daemon)
    remote = admin_remote(key, port)
    new = tmp_path / "new.toml"
    new.write_text(policy_with(public, "engineer"))

    dry = meterctl("policy", "push", str(new), *remote, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert dry.stdout.splitlines()[0] == "dry run: nothing applied"
    assert "+ operator: comm_config @ /" in dry.stdout

    pushed = meterctl("policy", "push", str(new), *remote)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert pushed.stdout.splitlines()[0] == "applied: policy store version 2"

    lockout = tmp_path / "lockout.toml"
    lockout.write_text(policy_with(public, "engineer").replace('roles = ["rbacmnt"]', 'roles = ["viewer"]'))
    refused = meterctl("policy", "push", str(lockout), *remote)
    assert refused.returncode == 1
    assert "no-user-manager" in refused.stdout

    invalid = tmp_path / "invalid.toml"
    invalid.write_text('[users.x]\nroles = ["operater"]\n')
    bad = meterctl("policy", "push", str(invalid), *remote)
    assert bad.returncode == 2
    assert 'unknown role "operater"; did you mean "operator"?' in bad.stdout

    back = meterctl("policy", "rollback", *remote)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "- operator: comm_config @ /" in back.stdout
    assert (daemon.state_dir / "policy" / "current").read_text().strip() == "3"
    assert daemon.stop()[0] == 0

    changes = read_records(
        daemon.state_dir / "security-log", Query(events=frozenset({EventType.POLICY_CHANGE}))
    )
    assert [(r.principal, r.outcome.value, r.detail.get("how")) for r in changes] == [
        ("rbacmnt", "allow", "push"),
        ("rbacmnt", "deny", "push"),
        ("rbacmnt", "deny", "push"),
        ("rbacmnt", "allow", "rollback"),
    ]
