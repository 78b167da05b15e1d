"""meterd as a process: start-up, notify protocol, misconfiguration, reload, bounded shutdown."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from meterd.channels.modbus import TlsConfig
from meterd.channels.modbus.certificates import server_context
from meterd.errors import ChannelError
from meterd.seclog import EventType, Query, read_records
from tests.channels.modbus.pki import make_pki
from tests.daemon.conftest import ROOT, RunningDaemon, free_port, write_config

StartDaemon = Callable[[Path], RunningDaemon]
DEFAULT_POLICY = ROOT / "config" / "policy.toml"


def copy_policy(tmp_path: Path) -> Path:
    policy = tmp_path / "policy.toml"
    shutil.copy(DEFAULT_POLICY, policy)
    return policy


def events(state: Path, event: EventType) -> list[dict[str, object]]:
    return [r.to_json() for r in read_records(state / "security-log", Query(events=frozenset({event})))]


def test_starts_notifies_and_stops_cleanly(tmp_path: Path, start_daemon: StartDaemon) -> None:
    port = free_port()
    daemon = start_daemon(write_config(tmp_path, copy_policy(tmp_path), ssh_port=port))
    assert "READY=1" in daemon.wait_for("READY=1")
    daemon.wait_for("WATCHDOG=1")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        assert conn.recv(64).startswith(b"SSH-2.0-")
    credentials = daemon.state_dir / "demo-credentials.txt"
    assert credentials.stat().st_mode & 0o777 == 0o600
    users = {line.split()[0] for line in credentials.read_text().splitlines() if not line.startswith("#")}
    assert users == {"viewer", "operator", "engineer", "installer", "approver", "secadm", "secaud", "rbacmnt"}
    assert (daemon.state_dir / "security-log-initial-key").stat().st_mode & 0o777 == 0o600
    code, took = daemon.stop()
    assert code == 0
    assert took < 10
    assert "STOPPING=1" in daemon.wait_for("STOPPING=1", timeout=1)
    states = [r["detail"] for r in events(daemon.state_dir, EventType.REBOOT)]
    assert [d["state"] for d in states] == ["started", "stopped"]  # type: ignore[index]
    *_, stopped, checkpoint = read_records(daemon.state_dir / "security-log")
    assert (stopped.event, stopped.detail["state"]) == (EventType.REBOOT, "stopped")
    assert checkpoint.event is EventType.LOG_CHECKPOINT  # the shutdown seals the head
    assert (checkpoint.detail["head_seq"], checkpoint.detail["head_digest"]) == (stopped.seq, stopped.digest)
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "meterd.cli.meterctl",
            "log",
            "verify",
            "--dir",
            str(daemon.state_dir / "security-log"),
            "--key",
            (daemon.state_dir / "security-log-initial-key").read_text().strip(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_demo_credentials_survive_a_restart(tmp_path: Path, start_daemon: StartDaemon) -> None:
    config = write_config(tmp_path, copy_policy(tmp_path))
    first = start_daemon(config)
    first.wait_for("READY=1")
    before = (first.state_dir / "demo-credentials.txt").read_text()
    assert first.stop()[0] == 0
    second = start_daemon(config)
    second.wait_for("READY=1")
    assert (second.state_dir / "demo-credentials.txt").read_text() == before
    assert second.stop()[0] == 0


def run_once(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterd.daemon.main", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**os.environ, "NOTIFY_SOCKET": ""},
    )


def test_invalid_config_exits_2_with_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, copy_policy(tmp_path), extra="[ssh]\nprot = 22\n")
    result = run_once(config)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f'meterd: {config}: ssh.prot: unknown key "prot"; did you mean "port"?'
    ]


def test_invalid_policy_exits_2_before_listening(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[users.op]\nroles = ["operater"]\n')
    port = free_port()
    result = run_once(write_config(tmp_path, policy, ssh_port=port))
    assert result.returncode == 2
    assert 'users.op.roles[0]: unknown role "operater"; did you mean "operator"?' in result.stderr


def test_policy_locking_out_every_administrator_refuses_to_start(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[users.op]\nroles = ["operator"]\n')
    result = run_once(write_config(tmp_path, policy))
    assert result.returncode == 2
    assert "no-user-manager" in result.stderr


def test_port_in_use_exits_1_and_leaves_nothing_listening(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_once(write_config(tmp_path, copy_policy(tmp_path), ssh_port=port))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("meterd: cannot start: ssh")
    assert "address already in use" in result.stderr


def test_a_tls_key_not_matching_its_certificate_exits_1_with_one_line(tmp_path: Path) -> None:
    # Checked in a child process at start (the daemon's threads run by then); its message is the daemon's.
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    tls = TlsConfig(enabled=True, cert=pki.server.cert, key=pki.clients["viewer"].key, ca=pki.ca)
    with pytest.raises(ChannelError) as in_process:
        server_context(tls)
    extra = "\n".join(
        [
            "[modbus]",
            f"port = {free_port()}",
            "[modbus.tls]",
            "enabled = true",
            f"port = {free_port()}",
            f'cert = "{tls.cert}"',
            f'key = "{tls.key}"',
            f'ca = "{tls.ca}"',
            "",
        ]
    )
    result = run_once(write_config(tmp_path, copy_policy(tmp_path), ssh_port=free_port(), extra=extra))
    assert result.returncode == 1
    assert str(in_process.value).startswith("modbus: cannot load")
    assert result.stderr.strip().splitlines()[-1] == f"meterd: cannot start: {in_process.value}"
    assert result.stderr.count("KEY_VALUES_MISMATCH") == 1, result.stderr


def test_sighup_reload_good_and_bad(tmp_path: Path, start_daemon: StartDaemon) -> None:
    policy = copy_policy(tmp_path)
    daemon = start_daemon(write_config(tmp_path, policy))
    daemon.wait_for("READY=1")
    policy.write_text(
        policy.read_text().replace(
            '[users.viewer]\nroles = ["viewer"]', '[users.viewer]\nroles = ["operator"]'
        )
    )
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for("RELOADING=1")
    assert "policy version 2" in daemon.wait_for("STATUS=serving")
    policy.write_text('[users.x]\nroles = ["nope"]\n')
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for("RELOADING=1")
    assert "reload refused" in daemon.wait_for("STATUS=reload refused")
    assert daemon.stop()[0] == 0
    changes = events(daemon.state_dir, EventType.POLICY_CHANGE)
    assert [c["outcome"] for c in changes] == ["allow", "deny"]
    assert "+viewer:peak_demand_reset@/" in str(changes[0]["detail"])
    assert (daemon.state_dir / "policy" / "current").read_text().strip() == "2"
