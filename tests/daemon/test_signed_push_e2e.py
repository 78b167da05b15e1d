"""Signed bundles (format 2) end to end: meterctl keygen/sign/push over real OpenSSH to a running meterd."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

from meterd.seclog import EventType, Query, read_records
from tests.daemon.conftest import RunningDaemon, free_port, keypair, policy_with, write_config
from tests.meterctl import meterctl

StartDaemon = Callable[[Path], RunningDaemon]


def signed_meter(tmp_path: Path, start_daemon: StartDaemon) -> tuple[RunningDaemon, list[str], str]:
    """A meter with id m1, label substation-7 and three trusted keys, two of which must sign."""
    for name in ("k1", "k2", "k3"):
        made = meterctl("policy", "keygen", "--out", str(tmp_path / name))
        assert made.returncode == 0, made.stderr
    key, public = keypair(tmp_path)
    configured = tmp_path / "policy.toml"
    configured.write_text(policy_with(public, "operator"))
    port = free_port()
    config = write_config(tmp_path, configured, ssh_port=port)
    identity = (
        'meter_id = "m1"\nmeter_labels = ["substation-7"]\npolicy_signing_threshold = 2\n'
        f'policy_signing_keys = ["{tmp_path}/k1.pub.pem", "{tmp_path}/k2.pub.pem", "{tmp_path}/k3.pub.pem"]\n'
    )
    config.write_text(config.read_text().replace("[daemon]\n", "[daemon]\n" + identity))
    daemon = start_daemon(config)
    daemon.wait_for("READY=1")
    remote = ["--host", "127.0.0.1", "--port", str(port), "--user", "rbacmnt", "--identity", str(key)]
    remote += ["--ssh-option", "StrictHostKeyChecking=no", "--ssh-option", "UserKnownHostsFile=/dev/null"]
    return daemon, remote, public


def test_threshold_replay_restart_targets_expiry(tmp_path: Path, start_daemon: StartDaemon) -> None:
    daemon, remote, public = signed_meter(tmp_path, start_daemon)
    policy = tmp_path / "new.toml"
    policy.write_text(policy_with(public, "engineer"))
    bundle = str(tmp_path / "v1.json")
    k1, k2 = ["--key", str(tmp_path / "k1.pem")], ["--key", str(tmp_path / "k2.pem")]
    signed = meterctl(
        "policy",
        "sign",
        str(policy),
        *k1,
        "--out",
        bundle,
        "--version",
        "1",
        "--expires",
        "30d",
        "--target",
        "meter:m1",
    )
    assert signed.returncode == 0, signed.stderr
    one = meterctl("policy", "push", bundle, *remote)
    assert one.returncode == 1, one.stdout + one.stderr
    assert "bundle: signatures: 1 valid signature(s) from trusted keys, 2 required" in one.stdout
    cosigned = meterctl("policy", "sign", bundle, *k2, "--out", bundle)
    assert cosigned.returncode == 0, cosigned.stderr
    dry = meterctl("policy", "push", bundle, *remote, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "+ operator: comm_config @ /" in dry.stdout
    pushed = meterctl("policy", "push", bundle, *remote)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert pushed.stdout.splitlines()[0] == "applied: policy store version 2"
    replay = meterctl("policy", "push", bundle, *remote)
    assert replay.returncode == 1
    assert "bundle: signed.version: version 1 is not above 1" in replay.stdout

    # kill -9 and restart: the accepted version is still known.
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(10)
    daemon = start_daemon(daemon.config)
    daemon.wait_for("READY=1")
    again = meterctl("policy", "push", bundle, *remote)
    assert again.returncode == 1
    assert "version 1 is not above 1" in again.stdout

    def sign(version: int, *extra: str) -> str:
        out = str(tmp_path / f"b{version}-{len(extra)}.json")
        made = meterctl(
            "policy", "sign", str(policy), *k1, *k2, "--out", out, "--version", str(version), *extra
        )
        assert made.returncode == 0, made.stderr
        return out

    elsewhere = meterctl(
        "policy", "push", sign(2, "--expires", "1d", "--target", "label:substation-8"), *remote
    )
    assert elsewhere.returncode == 1
    assert "bundle: signed.targets: not targeted at this meter" in elsewhere.stdout
    stale = meterctl(
        "policy", "push", sign(2, "--expires", "2001-01-01T00:00:00Z", "--target", "meter:m1"), *remote
    )
    assert stale.returncode == 1
    assert "bundle: signed.expires: the bundle expired at 2001-01-01T00:00:00Z" in stale.stdout
    unsigned = meterctl("policy", "push", str(policy), *remote)
    assert unsigned.returncode == 1
    assert "this meter accepts only format 2 bundles" in unsigned.stdout
    # Fleet rollback: the older content under a higher version, for the substation.
    old = tmp_path / "old.toml"
    old.write_text(policy_with(public, "operator"))
    rollback = str(tmp_path / "rollback.json")
    made = meterctl(
        "policy",
        "sign",
        str(old),
        *k1,
        *k2,
        "--out",
        rollback,
        "--version",
        "3",
        "--expires",
        "1d",
        "--target",
        "label:substation-7",
    )
    assert made.returncode == 0, made.stderr
    back = meterctl("policy", "push", rollback, *remote)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "- operator: comm_config @ /" in back.stdout
    assert daemon.stop()[0] == 0

    state = json.loads((daemon.state_dir / "policy" / "bundles.json").read_text())
    assert sorted(state["highest"].values()) == [3, 3]
    changes = read_records(
        daemon.state_dir / "security-log", Query(events=frozenset({EventType.POLICY_CHANGE}))
    )
    assert [(r.outcome.value, r.detail.get("reason") or r.detail.get("bundle_version")) for r in changes] == [
        ("deny", "too-few-signatures"),
        ("allow", 1),
        ("deny", "replay"),
        ("deny", "replay"),
        ("deny", "not-targeted"),
        ("deny", "expired"),
        ("deny", "unsigned"),
        ("allow", 3),
    ]
