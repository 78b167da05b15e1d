"""The meter side of policy push and rollback: validation, lint, signatures, dry runs, records."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from meterd.daemon.bundle_gate import BundleGate
from meterd.daemon.policies import PolicyManager
from meterd.daemon.policy_service import PolicyService
from meterd.policy.bundle import Bundle, sign
from meterd.policy.dump import dump_policy
from meterd.policy.loader import load_policy
from meterd.policy.request import Outcome
from meterd.policy.signed import KeySet, MeterIdentity, SignedBundle
from meterd.seclog import EventType, Query, SecurityLog, read_records
from tests.daemon.helpers import ADMIN_POLICY, make_guard, session
from tests.policy.signing import make_bundle

GOOD = dump_policy(
    load_policy({**ADMIN_POLICY, "users": {**ADMIN_POLICY["users"], "op": {"roles": ["engineer"]}}})
)


def setup(
    tmp_path: Path, signing_key: Ed25519PrivateKey | None = None
) -> tuple[PolicyService, PolicyManager]:
    configured = tmp_path / "policy.toml"
    configured.write_text(dump_policy(load_policy(ADMIN_POLICY)))
    manager = PolicyManager(configured, tmp_path, demo_accounts=False)
    manager.initial()
    if signing_key is None:
        return PolicyService(manager), manager
    keys = KeySet.of([signing_key.public_key()], 1)
    gate = BundleGate(keys, MeterIdentity("m1", frozenset()), manager.store.directory)
    return PolicyService(manager, gate), manager


def records(seclog: SecurityLog, event: EventType) -> list[dict[str, object]]:
    return [r.to_json() for r in read_records(seclog.directory, Query(events=frozenset({event})))]


def test_push_applies_records_and_keeps_versions(tmp_path: Path) -> None:
    async def main() -> None:
        service, manager = setup(tmp_path)
        guard, seclog = make_guard(tmp_path)
        admin = await session(guard, "admin")
        status, out = await service.run(guard, admin, ["push"], Bundle(GOOD).encode())
        assert status == 0, out
        assert out.splitlines()[0] == "applied: policy store version 2"
        assert "+ op: comm_config @ /" in out
        assert "- op: peak_demand_reset @ /" in out
        assert guard.compiled.policy.users["op"].roles == ("engineer",)
        assert manager.store.versions() == [1, 2]
        change = records(seclog, EventType.POLICY_CHANGE)[-1]
        assert change["principal"] == "admin"
        assert change["outcome"] == "allow"
        assert "+op:comm_config@/" in str(change["detail"])
        status, out = await service.run(guard, admin, ["versions"], b"")
        assert out.splitlines() == ["1", "2 (in force)"]
        seclog.close()

    asyncio.run(main())


def test_invalid_policy_is_refused_with_every_error(tmp_path: Path) -> None:
    async def main() -> None:
        service, manager = setup(tmp_path)
        guard, seclog = make_guard(tmp_path)
        admin = await session(guard, "admin")
        bad = '[users.a]\nroles = ["operater"]\n[users.b]\nrolez = []\n'
        before = guard.compiled
        status, out = await service.run(guard, admin, ["push"], Bundle(bad).encode())
        assert status == 2
        assert 'users.a.roles[0]: unknown role "operater"; did you mean "operator"?' in out
        assert 'users.b.rolez: unknown key "rolez"; did you mean "roles"?' in out
        assert guard.compiled is before
        assert manager.store.versions() == [1]
        assert records(seclog, EventType.POLICY_CHANGE)[-1]["outcome"] == "deny"
        seclog.close()

    asyncio.run(main())


def test_push_that_locks_out_every_administrator_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        service, manager = setup(tmp_path)
        guard, seclog = make_guard(tmp_path)
        admin = await session(guard, "admin")
        lockout = dump_policy(load_policy({"users": {"admin": {"roles": ["operator"]}}}))
        status, out = await service.run(guard, admin, ["push"], Bundle(lockout).encode())
        assert status == 1
        assert "no-user-manager" in out
        assert guard.compiled.policy.users["admin"].roles == ("rbacmnt",)
        assert manager.store.current() == 1
        seclog.close()

    asyncio.run(main())


def test_only_user_managers_may_push(tmp_path: Path) -> None:
    async def main() -> None:
        service, manager = setup(tmp_path)
        guard, seclog = make_guard(tmp_path)
        operator = await session(guard, "op")
        status, out = await service.run(guard, operator, ["push"], Bundle(GOOD).encode())
        assert status == 1
        assert out.startswith("denied: user_management")
        assert manager.store.versions() == [1]
        denied = records(seclog, EventType.PERMISSION_DENIED)[-1]
        assert denied["principal"] == "op"
        assert denied["permission"] == "user_management"
        seclog.close()

    asyncio.run(main())


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        service, manager = setup(tmp_path)
        guard, seclog = make_guard(tmp_path)
        admin = await session(guard, "admin")
        status, out = await service.run(guard, admin, ["push", "--dry-run"], Bundle(GOOD).encode())
        assert status == 0
        assert out.splitlines()[0] == "dry run: nothing applied"
        assert "+ op: comm_config @ /" in out
        assert manager.store.versions() == [1]
        assert guard.compiled.policy.users["op"].roles == ("operator",)
        seclog.close()

    asyncio.run(main())


def key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


@pytest.mark.parametrize("case", ["unsigned", "wrong key", "tampered", "format 1 signed"])
def test_signed_meter_refuses_bad_bundles(tmp_path: Path, case: str) -> None:
    tool = Ed25519PrivateKey.generate()

    async def main() -> None:
        service, manager = setup(tmp_path, tool)
        guard, seclog = make_guard(tmp_path)
        admin = await session(guard, "admin")
        bundle: Bundle | SignedBundle
        if case == "unsigned":
            bundle = Bundle(GOOD)
        elif case == "wrong key":
            bundle = make_bundle(GOOD, [Ed25519PrivateKey.generate()], 1)
        elif case == "tampered":
            signed = make_bundle(GOOD, [tool], 1)
            bundle = SignedBundle(GOOD.replace('"engineer"', '"installer"'), signed.signed, signed.signatures)
        else:
            # A format 1 bundle, even one the meter's key signed, carries no version, expiry or targets.
            bundle = Bundle(GOOD, sign(GOOD, key_pem(tool)))
        status, out = await service.run(guard, admin, ["push"], bundle.encode())
        assert status == 1
        assert "refused" in out
        assert manager.store.versions() == [1]
        good = make_bundle(GOOD, [tool], 1)
        status, out = await service.run(guard, admin, ["push"], good.encode())
        assert status == 0, out
        seclog.close()

    asyncio.run(main())


def test_rollback_restores_an_earlier_version(tmp_path: Path) -> None:
    async def main() -> None:
        service, manager = setup(tmp_path)
        guard, seclog = make_guard(tmp_path)
        admin = await session(guard, "admin")
        assert (await service.run(guard, admin, ["push"], Bundle(GOOD).encode()))[0] == 0
        status, out = await service.run(guard, admin, ["rollback", "--dry-run"], b"")
        assert status == 0
        assert "- op: comm_config @ /" in out
        status, out = await service.run(guard, admin, ["rollback"], b"")
        assert status == 0, out
        assert guard.compiled.policy.users["op"].roles == ("operator",)
        assert manager.store.versions() == [1, 2, 3]
        status, out = await service.run(guard, admin, ["rollback", "--to", "2"], b"")
        assert status == 0
        assert guard.compiled.policy.users["op"].roles == ("engineer",)
        status, out = await service.run(guard, admin, ["rollback", "--to", "99"], b"")
        assert status == 2
        assert [r["outcome"] for r in records(seclog, EventType.POLICY_CHANGE)] == ["allow"] * 3
        assert all(r["outcome"] != Outcome.DENY.value for r in records(seclog, EventType.POLICY_CHANGE))
        seclog.close()

    asyncio.run(main())


def test_bad_usage(tmp_path: Path) -> None:
    async def main() -> None:
        service, _ = setup(tmp_path)
        guard, seclog = make_guard(tmp_path)
        admin = await session(guard, "admin")
        status, out = await service.run(guard, admin, ["frobnicate"], b"")
        assert status == 2
        assert out.startswith("usage:")
        status, out = await service.run(guard, admin, ["push"], b"not json")
        assert status == 2
        assert "not JSON" in out
        seclog.close()

    asyncio.run(main())
