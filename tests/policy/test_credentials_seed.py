"""The credentials snapshot: how a policy seeds it, how it is checked, linted and stored."""

from __future__ import annotations

import json
import secrets
import stat
import subprocess
from pathlib import Path

import pytest

from meterd.credentials import hash_secret
from meterd.daemon.credential_store import CredentialStore
from meterd.errors import ConfigError
from meterd.guard.credentials import Password, Pin, check_credential
from meterd.policy.credentials import (
    Credentials,
    UserCredentials,
    decode_store,
    encode_store,
    initial_credentials,
    lint_credentials,
    seed,
    user_management_logins,
    without_credentials,
)
from meterd.policy.loader import load_policy
from meterd.policy.model import Policy
from tests.cli.test_meterctl_policy import meterctl


def _secret() -> str:
    return secrets.token_urlsafe(12) + "-Aa1"


def _policy(**users: dict[str, object]) -> Policy:
    return load_policy({"users": {"admin": {"roles": ["rbacmnt"]}, **users}})


def test_seed_keeps_what_the_meter_holds_adds_new_users_and_drops_gone_ones() -> None:
    held, offered, fresh = (hash_secret(_secret(), log2_n=14) for _ in range(3))
    known = Credentials(
        {"admin": UserCredentials(password_hash=held), "gone": UserCredentials(pin_hash=held)}
    )
    policy = _policy(admin={"roles": ["rbacmnt"], "password": offered}, new={"password": fresh}, bare={})
    seeded = seed(known, policy)
    assert seeded.users == {
        "admin": UserCredentials(password_hash=held),
        "new": UserCredentials(password_hash=fresh),
    }
    stripped = without_credentials(policy)
    assert initial_credentials(stripped) == Credentials()
    assert stripped.users["admin"].roles == ("rbacmnt",)


def test_checks_use_the_snapshot_never_the_policy() -> None:
    held, offered = _secret(), _secret()
    policy = _policy(tech={"password": hash_secret(offered, log2_n=14)})
    credentials = Credentials(
        {
            "tech": UserCredentials(password_hash=hash_secret(held, log2_n=14)),
            "ghost": UserCredentials(password_hash=hash_secret(held, log2_n=14)),
        }
    )
    assert check_credential(policy, credentials, "tech", Password(held))
    assert not check_credential(policy, credentials, "tech", Password(offered))
    assert not check_credential(policy, credentials, "tech", Pin(held))
    # An entry for a name the policy does not have proves nothing.
    assert not check_credential(policy, credentials, "ghost", Password(held))


def test_lint_and_the_last_manager_login() -> None:
    policy = _policy(tech={"roles": ["engineer"]}, off={"enabled": False})
    key = UserCredentials(ssh_keys=("ssh-ed25519 placeholder-blob (not checked here)",))
    with_admin = Credentials({"admin": key})
    assert [f.subject for f in lint_credentials(policy, with_admin)] == ["tech"]
    assert [f.code for f in lint_credentials(policy, with_admin)] == ["no-credential"]
    assert user_management_logins(policy, with_admin) == ["admin"]
    assert user_management_logins(policy, Credentials({"tech": key})) == []
    pin_only = Credentials({"admin": UserCredentials(pin_hash=hash_secret(_secret(), log2_n=14))})
    assert user_management_logins(policy, pin_only) == []


def test_store_round_trip_and_corrupt_stores_are_refused(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    assert not store.exists()
    assert store.read() == Credentials()
    snapshot = Credentials({"a": UserCredentials(password_hash=hash_secret(_secret(), log2_n=14))})
    store.write(snapshot)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.read() == snapshot
    assert decode_store(encode_store(snapshot).decode()) == snapshot
    for bad in (
        "{",
        '{"format": 2, "users": {}}',
        '{"format": 1, "users": {"a": {"password": "clear-text"}}}',
        '{"format": 1, "users": {"a": {"passwd": "x"}}}',
        '{"format": 1, "users": {"a": {"ssh_keys": ["not a key"]}}}',
        '{"format": 1, "users": {"A B": {}}}',
    ):
        store.path.write_text(bad)
        with pytest.raises(ConfigError):
            store.read()


def test_meterctl_lint_reports_users_without_a_credential_on_that_meter(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[users.admin]\nroles = ["rbacmnt"]\n[users.tech]\nroles = ["engineer"]\n')
    store = tmp_path / "credentials.json"
    held = {"admin": {"password": hash_secret(_secret(), log2_n=14)}}
    store.write_text(json.dumps({"format": 1, "users": held}))
    result: subprocess.CompletedProcess[str] = meterctl(
        "policy", "lint", str(policy), "--credentials", str(store)
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"{policy}: warning: no-credential: tech: enabled local user would have no credential"
        in result.stdout
    )
    assert "no-credential: admin" not in result.stdout
    assert meterctl("policy", "lint", str(policy)).returncode == 0
    store.write_text("{}")
    bad = meterctl("policy", "lint", str(policy), "--credentials", str(store))
    assert bad.returncode == 2
    assert "credential store" in bad.stderr
