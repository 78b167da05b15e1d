"""Credentials are the meter's: pushes against a running meterd, logins with the real OpenSSH client."""

from __future__ import annotations

import json
import secrets
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from meterd.credentials import hash_secret
from meterd.seclog import EventType, Query, read_records
from tests.channels.ssh.harness import CLIENT_TIMEOUT, PASSWORD_LOGIN, SSH_BASE, have_clients
from tests.daemon.conftest import RunningDaemon, free_port, keypair, write_config
from tests.meterctl import meterctl

StartDaemon = Callable[[Path], RunningDaemon]

pytestmark = pytest.mark.skipif(not have_clients(), reason="needs ssh, ssh-keygen and sshpass")


def _password() -> str:
    # Random at run time (no credential in the repository); meets the default password rules.
    return secrets.token_urlsafe(12) + "-Aa1"


def _policy(*, admin: str = "", tech: str = "", extra: str = "", admin_roles: str = "rbacmnt") -> str:
    """A policy: ``admin`` manages users, ``tech`` is an engineer; credentials only where given."""
    return f"""
[policy]
name = "credential store test"
version = 1

[users.admin]
roles = ["{admin_roles}"]
{admin}

[users.tech]
roles = ["engineer"]
{tech}
{extra}
"""


class Meter:
    """A running meterd with SSH, reached as ``admin`` with a key for pushes."""

    def __init__(self, tmp_path: Path, start_daemon: StartDaemon, policy: str) -> None:
        self.tmp_path = tmp_path
        self.key, self.public = keypair(tmp_path)
        configured = tmp_path / "policy.toml"
        configured.write_text(policy.replace("@ADMIN_KEY@", self.public))
        self.port = free_port()
        self.daemon = start_daemon(write_config(tmp_path, configured, ssh_port=self.port))
        self.daemon.wait_for("READY=1")
        self.pushes = 0

    def push(self, policy: str, *options: str) -> subprocess.CompletedProcess[str]:
        self.pushes += 1
        path = self.tmp_path / f"push-{self.pushes}.toml"
        path.write_text(policy)
        remote = ["--host", "127.0.0.1", "--port", str(self.port), "--user", "admin", "--identity"]
        return meterctl(
            "policy",
            "push",
            str(path),
            *remote,
            str(self.key),
            "--ssh-option",
            "StrictHostKeyChecking=no",
            "--ssh-option",
            "UserKnownHostsFile=/dev/null",
            *options,
        )

    def ssh_password(
        self, user: str, password: str, command: str, stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        args = ["sshpass", "-p", password, "ssh", *SSH_BASE, *PASSWORD_LOGIN, "-p", str(self.port)]
        return subprocess.run(
            [*args, f"{user}@127.0.0.1", command],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
            check=False,
        )

    def records(self, event: EventType) -> list[dict[str, object]]:
        directory = self.daemon.state_dir / "security-log"
        return [r.to_json() for r in read_records(directory, Query(events=frozenset({event})))]


def test_pushes_never_change_a_credential_the_meter_holds(tmp_path: Path, start_daemon: StartDaemon) -> None:
    first, changed, other = _password(), _password(), _password()
    meter = Meter(
        tmp_path,
        start_daemon,
        _policy(admin='ssh_keys = ["@ADMIN_KEY@"]', tech=f'password = "{hash_secret(first, log2_n=14)}"'),
    )
    store = meter.daemon.state_dir / "credentials.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert set(json.loads(store.read_text())["users"]) == {"admin", "tech"}

    # A policy file without any credential (as the configuration tool keeps it): every login keeps working.
    bare = _policy()
    pushed = meter.push(bare)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert meter.ssh_password("tech", first, "whoami").returncode == 0
    again = meter.push(bare.replace('roles = ["engineer"]', 'roles = ["operator"]'))
    assert again.returncode == 0, again.stdout + again.stderr  # the admin's key still works

    # A password changed on the meter survives a push that carries another initial password.
    result = meter.ssh_password("tech", first, "passwd", stdin=f"{first}\n{changed}\n{changed}\n")
    assert result.returncode == 0, result.stdout + result.stderr
    pushed = meter.push(_policy(tech=f'password = "{hash_secret(other, log2_n=14)}"'))
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert meter.ssh_password("tech", changed, "whoami").returncode == 0
    assert meter.ssh_password("tech", other, "whoami").returncode != 0
    assert meter.ssh_password("tech", first, "whoami").returncode != 0
    assert "$scrypt$" not in (meter.daemon.state_dir / "policy" / "v000004.toml").read_text()
    assert meter.daemon.stop()[0] == 0

    changes = [(r["principal"], dict(r["detail"])) for r in meter.records(EventType.PASSWORD_CHANGE)]  # type: ignore[call-overload]
    # The store's own records (the guard's decision to allow ``passwd`` is one of this type too).
    assert [(who, detail["how"], detail["users"]) for who, detail in changes if "store" in detail] == [
        ("meterd", "start", "admin,tech"),
        ("tech", "password_change", "tech"),
    ]


def test_dry_run_reports_users_without_credentials_and_last_manager_login_is_kept(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    meter = Meter(tmp_path, start_daemon, _policy(admin='ssh_keys = ["@ADMIN_KEY@"]'))

    newcomer = _policy(extra='[users.newcomer]\nroles = ["viewer"]\n')
    dry = meter.push(newcomer, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "warning: no-credential: newcomer: enabled local user would have no credential" in dry.stdout
    assert "no-credential: admin" not in dry.stdout

    # user_management moves to a user with no credential: nobody could log in to manage users.
    handover = _policy(admin_roles="viewer", extra='[users.boss]\nroles = ["rbacmnt"]\n')
    dry = meter.push(handover, "--dry-run")
    assert dry.returncode == 1
    assert "error: no-user-manager-login" in dry.stdout
    refused = meter.push(handover)
    assert refused.returncode == 1
    assert "error: no-user-manager-login" in refused.stdout
    assert (meter.daemon.state_dir / "policy" / "current").read_text().strip() == "1"
    # Still the admin's meter: a push works, and the handover works once boss has a credential.
    (tmp_path / "boss").mkdir()
    _, boss_public = keypair(tmp_path / "boss")
    with_key = handover.replace('roles = ["rbacmnt"]', f'roles = ["rbacmnt"]\nssh_keys = ["{boss_public}"]')
    pushed = meter.push(with_key)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert meter.daemon.stop()[0] == 0

    refusals = [r for r in meter.records(EventType.POLICY_CHANGE) if r["outcome"] == "deny"]
    assert len(refusals) == 1
    assert "no-user-manager-login" in str(refusals[0]["detail"])
