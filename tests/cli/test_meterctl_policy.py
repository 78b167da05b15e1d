"""``meterctl policy`` and ``meterctl user`` as an operator runs them: a real process, exit codes and output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from meterd.credentials import verify_secret

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
POLICIES = sorted(CONFIG.glob("*.toml"))


def meterctl(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterd.cli.meterctl", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def test_shipped_policies_validate_and_lint_clean() -> None:
    assert len(POLICIES) >= 4
    result = meterctl("policy", "validate", *map(str, POLICIES))
    assert result.returncode == 0, result.stderr
    result = meterctl("policy", "lint", *map(str, POLICIES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("0 error(s), 0 warning(s)") == len(POLICIES)


def test_invalid_policy_exits_2_with_key_path(tmp_path: Path) -> None:
    bad = tmp_path / "policy.toml"
    bad.write_text('[roles.tech]\npermissions = ["terminal_access", "time_sync", "master_rest"]\n')
    result = meterctl("policy", "validate", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f'error: {bad}: roles.tech.permissions[2]: unknown permission "master_rest"; did you mean "master_reset"?'
    )


def test_lint_findings_exit_1(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[users.op]\nroles = ["operator"]\n')
    result = meterctl("policy", "lint", str(policy))
    assert result.returncode == 1
    assert "error: no-user-manager" in result.stdout


def test_explain_allow_and_deny() -> None:
    hub = str(CONFIG / "energy-hub.toml")
    allowed = meterctl(
        "policy",
        "explain",
        hub,
        "--user",
        "tomas",
        "--permission",
        "fs_read_only",
        "--resource",
        "/files/data/feeder-a/2026-11.csv",
        "--channel",
        "sftp",
    )
    assert allowed.returncode == 0
    assert allowed.stdout.strip().endswith("verdict: allow")
    denied = meterctl(
        "policy",
        "explain",
        hub,
        "--user",
        "tomas",
        "--permission",
        "peak_demand_reset",
        "--resource",
        "/meter/demand",
        "--channel",
        "ssh",
    )
    assert denied.returncode == 1
    assert "operator via eh_technician" in denied.stdout
    assert "verdict: deny (out_of_scope)" in denied.stdout
    typo = meterctl("policy", "explain", hub, "--user", "tomas", "--permission", "peak_demand_rest")
    assert typo.returncode == 2
    assert 'did you mean "peak_demand_reset"' in typo.stderr


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_review_formats(fmt: str) -> None:
    result = meterctl("policy", "review", str(CONFIG / "policy.toml"), "--format", fmt)
    assert result.returncode == 0
    assert "rbacmnt" in result.stdout


def test_diff_exit_codes() -> None:
    same = meterctl("policy", "diff", str(CONFIG / "policy.toml"), str(CONFIG / "policy.toml"))
    assert same.returncode == 0
    assert same.stdout.strip() == "0 gained, 0 lost"
    other = meterctl("policy", "diff", str(CONFIG / "policy.toml"), str(CONFIG / "enos.toml"))
    assert other.returncode == 1
    assert "- rbacmnt: user_management @ /" in other.stdout


def test_usage_errors_exit_2() -> None:
    assert meterctl("policy").returncode == 2
    assert meterctl("policy", "frobnicate").returncode == 2


def test_hash_password() -> None:
    result = meterctl("user", "hash-password", "--stdin", stdin="Meter-Reading-42\n")
    assert result.returncode == 0
    assert verify_secret("Meter-Reading-42", result.stdout.strip())
    weak = meterctl("user", "hash-password", "--stdin", stdin="short\n")
    assert weak.returncode == 2
    assert "at least 12 characters" in weak.stderr
    pin = meterctl("user", "hash-password", "--pin", "--stdin", stdin="482913\n")
    assert pin.returncode == 0
    assert verify_secret("482913", pin.stdout.strip())
    assert meterctl("user", "hash-password", "--pin", "--stdin", stdin="12ab\n").returncode == 2


def test_push_refuses_a_host_key_file_without_a_key_before_connecting(tmp_path: Path) -> None:
    not_a_key = tmp_path / "meter.pub"
    not_a_key.write_text("-----BEGIN PUBLIC KEY-----\n")
    for command in (["push", str(CONFIG / "policy.toml")], ["rollback"]):
        result = meterctl(
            "policy", *command, "--host", "127.0.0.1", "--port", "1", "--host-key", str(not_a_key)
        )
        assert result.returncode == 2
        assert result.stderr.startswith(f"meterctl: {not_a_key}: not an SSH public key: ")
        assert "could not reach" not in result.stderr
