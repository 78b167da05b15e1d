"""The policy manager and the credential store: seeding at start, upgrades, corrupt stores, records."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest

from meterd.credentials import hash_secret
from meterd.daemon.policies import PolicyManager, PolicyRefusedError
from meterd.daemon.store import PolicyStore
from meterd.errors import ConfigError
from meterd.guard import Guard, Password
from meterd.policy.request import Channel
from meterd.seclog import EventType, Query, SecurityLog, read_records


def _policy_text(password_hash: str = "") -> str:
    password = f'password = "{password_hash}"' if password_hash else ""
    return f'[users.admin]\nroles = ["rbacmnt"]\n{password}\n[users.op]\nroles = ["operator"]\n'


def test_a_stored_version_with_hashes_seeds_the_store_once(tmp_path: Path) -> None:
    """A meter upgraded from before the store: its policy in force still carries the hashes."""
    secret = secrets.token_urlsafe(12) + "-Aa1"
    PolicyStore(tmp_path / "policy").commit(_policy_text(hash_secret(secret, log2_n=14)))
    configured = tmp_path / "policy.toml"
    configured.write_text(_policy_text())
    manager = PolicyManager(configured, tmp_path, demo_accounts=False)
    compiled, version = manager.initial()
    assert version == 1
    assert compiled.policy.users["admin"].password_hash is None
    assert set(manager.initial_credentials.users) == {"admin"}
    stored = json.loads((tmp_path / "credentials.json").read_text())
    assert set(stored["users"]) == {"admin"}

    async def main() -> None:
        SecurityLog.init(tmp_path / "log")
        seclog = SecurityLog.open(tmp_path / "log")
        guard = Guard(compiled, seclog, credentials=manager.initial_credentials)
        await manager.record_start(guard)
        assert await guard.authenticate(Channel.SSH, "127.0.0.1:1", "admin", Password(secret))
        # Reloading the configured file (no hashes) keeps the admin's password.
        await manager.reload(guard)
        assert await guard.authenticate(Channel.SSH, "127.0.0.1:1", "admin", Password(secret))
        seclog.close()

    asyncio.run(main())
    records = read_records(tmp_path / "log", Query(events=frozenset({EventType.PASSWORD_CHANGE})))
    assert [(r.principal, r.detail["how"], r.detail["users"]) for r in records] == [
        ("meterd", "start", "admin")
    ]


def test_a_corrupt_store_stops_the_start(tmp_path: Path) -> None:
    configured = tmp_path / "policy.toml"
    configured.write_text(_policy_text())
    PolicyManager(configured, tmp_path, demo_accounts=False).initial()
    (tmp_path / "credentials.json").write_text('{"format": 1, "users": {"admin": {"password": "clear"}}}')
    with pytest.raises(ConfigError, match="credential store"):
        PolicyManager(configured, tmp_path, demo_accounts=False).initial()


def test_unwritable_store_refuses_the_change(tmp_path: Path) -> None:
    configured = tmp_path / "policy.toml"
    configured.write_text(_policy_text())
    manager = PolicyManager(configured, tmp_path, demo_accounts=False)
    compiled, _ = manager.initial()
    manager.credentials.path = tmp_path / "missing-dir" / "credentials.json"
    secret_hash = hash_secret(secrets.token_urlsafe(12) + "-Aa1", log2_n=14)

    async def main() -> None:
        SecurityLog.init(tmp_path / "log")
        seclog = SecurityLog.open(tmp_path / "log")
        guard = Guard(compiled, seclog, credentials=manager.initial_credentials)
        configured.write_text(_policy_text(secret_hash))
        with pytest.raises(PolicyRefusedError, match="cannot write the credential store"):
            await manager.reload(guard)
        assert guard.compiled is compiled
        assert guard.credentials == manager.initial_credentials
        seclog.close()

    asyncio.run(main())
    assert manager.store.versions() == [1]


def test_a_crash_before_the_policy_is_stored_keeps_every_credential_of_the_old_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The push removes op and adds newbie; the meter dies between the store and the policy write."""
    admin_hash, op_hash, newbie_hash = (
        hash_secret(secrets.token_urlsafe(12) + "-Aa1", log2_n=14) for _ in range(3)
    )
    configured = tmp_path / "policy.toml"
    configured.write_text(
        _policy_text(admin_hash).replace('["operator"]', f'["operator"]\npassword = "{op_hash}"')
    )
    manager = PolicyManager(configured, tmp_path, demo_accounts=False)
    compiled, _ = manager.initial()
    pushed = f'[users.admin]\nroles = ["rbacmnt"]\n[users.newbie]\nroles = ["viewer"]\npassword = "{newbie_hash}"\n'

    def crash(text: str) -> int:
        raise OSError(5, "power lost")

    async def main() -> None:
        SecurityLog.init(tmp_path / "log")
        seclog = SecurityLog.open(tmp_path / "log")
        guard = Guard(compiled, seclog, credentials=manager.initial_credentials)
        monkeypatch.setattr(manager.store, "commit", crash)
        with pytest.raises(OSError, match="power lost"):
            await manager.apply(
                guard, manager.parse_pushed(pushed, "pushed"), by="admin", channel=Channel.SSH, how="push"
            )
        seclog.close()

    asyncio.run(main())
    restarted = PolicyManager(configured, tmp_path, demo_accounts=False)
    restarted.initial()
    assert set(restarted.initial_credentials.users) == {"admin", "op"}
    assert restarted.initial_credentials.of("op").password_hash == op_hash
