"""The meter's side of bundle format 2: refusals recorded with their reason, versions kept across restarts
and kill -9, local rollback beside fleet versions, key rotation by threshold."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meterd.daemon.bundle_gate import BundleGate
from meterd.daemon.policies import PolicyManager
from meterd.daemon.policy_service import PolicyService
from meterd.errors import ConfigError
from meterd.guard import Guard
from meterd.policy.bundle import Bundle
from meterd.policy.signed import KeySet, MeterIdentity, SignedBundle, key_id
from meterd.seclog import EventType, Query, SecurityLog, read_records
from tests.daemon.helpers import POLICY_A, POLICY_B, make_guard, policy_text, session
from tests.policy.signing import make_bundle

ROOT = Path(__file__).resolve().parents[2]
A, B, C = (Ed25519PrivateKey.generate() for _ in range(3))
METER = MeterIdentity("m1", frozenset({"substation-7"}))


def service_for(tmp_path: Path, keys: KeySet | None = None) -> tuple[PolicyService, PolicyManager]:
    configured = tmp_path / "policy.toml"
    configured.write_text(POLICY_A)
    manager = PolicyManager(configured, tmp_path, demo_accounts=False)
    manager.initial()
    configured_keys = keys or KeySet.of([A.public_key(), B.public_key(), C.public_key()], 2)
    return PolicyService(manager, BundleGate(configured_keys, METER, manager.store.directory)), manager


def policy_changes(seclog: SecurityLog) -> list[dict[str, object]]:
    return [
        r.to_json()
        for r in read_records(seclog.directory, Query(events=frozenset({EventType.POLICY_CHANGE})))
    ]


async def push(
    service: PolicyService, guard: Guard, bundle: Bundle | SignedBundle, *extra: str
) -> tuple[int, str]:
    admin = await session(guard, "admin")
    return await service.run(guard, admin, ["push", *extra], bundle.encode())


def test_every_refusal_names_its_reason_changes_nothing_and_is_recorded(tmp_path: Path) -> None:
    async def main() -> None:
        service, manager = service_for(tmp_path)
        guard, seclog = make_guard(tmp_path)
        status, out = await push(service, guard, make_bundle(POLICY_B, [A, B], 5))
        assert status == 0, out
        assert manager.store.current() == 2
        cases: dict[str, Bundle | SignedBundle] = {
            "replay": make_bundle(POLICY_B, [A, B], 5),
            "too-few-signatures": make_bundle(POLICY_A, [A], 6),
            "unknown-key": make_bundle(POLICY_A, [A, Ed25519PrivateKey.generate()], 6),
            "expired": make_bundle(POLICY_A, [A, B], 6, expires=datetime.now(UTC) - timedelta(minutes=1)),
            "not-targeted": make_bundle(POLICY_A, [A, B], 6, meters=["m2"], labels=["substation-8"]),
            "unsigned": Bundle(POLICY_A),
        }
        messages = {
            "replay": "bundle: signed.version: version 5 is not above 5, the highest accepted with key",
            "too-few-signatures": "bundle: signatures: 1 valid signature(s) from trusted keys, 2 required",
            "unknown-key": "bundle: signatures[1].keyid: unknown key id",
            "expired": "bundle: signed.expires: the bundle expired at",
            "not-targeted": 'bundle: signed.targets: not targeted at this meter (id "m1"',
            "unsigned": "bundle: format: this meter accepts only format 2 bundles",
        }
        for reason, bundle in cases.items():
            for dry in ([], ["--dry-run"]):
                status, out = await push(service, guard, bundle, *dry)
                assert status == 1, (reason, out)
                assert out.splitlines()[0] == "refused; the running policy is unchanged:"
                assert messages[reason] in out, (reason, out)
                assert manager.store.current() == 2
                assert guard.compiled.policy.users["op"].roles == ("engineer",)
                record = policy_changes(seclog)[-1]
                assert record["outcome"] == "deny"
                assert record["detail"]["reason"] == reason  # type: ignore[index]
        status, out = await push(
            service, guard, make_bundle(POLICY_A, [B, C], 6, meters=[], labels=["substation-7"])
        )
        assert status == 0, out
        accepted = [r for r in policy_changes(seclog) if r["outcome"] == "allow"]
        assert [r["detail"]["bundle_version"] for r in accepted] == [5, 6]  # type: ignore[index]
        seclog.close()

    asyncio.run(main())


def test_versions_survive_a_restart(tmp_path: Path) -> None:
    async def main() -> None:
        service, _ = service_for(tmp_path)
        guard, seclog = make_guard(tmp_path)
        old = make_bundle(POLICY_B, [A, B], 3)
        assert (await push(service, guard, old))[0] == 0
        assert (await push(service, guard, make_bundle(POLICY_A, [A, C], 4)))[0] == 0
        # A new process: the manager and gate read everything from disk.
        restarted, manager = service_for(tmp_path)
        status, out = await push(restarted, guard, old)
        assert status == 1
        assert "version 3 is not above" in out
        assert manager.store.current() == 3
        state = json.loads((tmp_path / "policy" / "bundles.json").read_text())
        assert state["highest"] == {
            key_id(A.public_key()): 4,
            key_id(B.public_key()): 3,
            key_id(C.public_key()): 4,
        }
        seclog.close()

    asyncio.run(main())


def test_fleet_rollback_is_older_content_under_a_higher_version_and_local_rollback_stays(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        service, manager = service_for(tmp_path)
        guard, seclog = make_guard(tmp_path)
        assert (await push(service, guard, make_bundle(POLICY_B, [A, B], 1)))[0] == 0
        admin = await session(guard, "admin")
        # The meter's own rollback: a user_management holder, recorded as a rollback.
        status, out = await service.run(guard, admin, ["rollback"], b"")
        assert status == 0, out
        assert guard.compiled.policy.users["op"].roles == ("operator",)
        assert policy_changes(seclog)[-1]["detail"]["how"] == "rollback"  # type: ignore[index]
        status, out = await service.run(guard, admin, ["status"], b"")
        report = json.loads(out)
        assert report["bundle_version"] is None  # the bundle is no longer in force
        assert report["highest_bundle_version"] == 1
        # Re-pushing the same bundle is a replay; the fleet signs the content again, higher.
        assert (await push(service, guard, make_bundle(POLICY_B, [A, B], 1)))[0] == 1
        status, out = await push(service, guard, make_bundle(POLICY_B, [A, B], 2))
        assert status == 0, out
        report = json.loads((await service.run(guard, admin, ["status"], b""))[1])
        assert report["bundle_version"] == 2
        assert report["store_version"] == manager.store.current()
        seclog.close()

    asyncio.run(main())


def test_key_rotation_needs_the_current_threshold(tmp_path: Path) -> None:
    async def main() -> None:
        service, manager = service_for(tmp_path)
        guard, seclog = make_guard(tmp_path)
        new1, new2 = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        new_set = KeySet.of([new1.public_key(), new2.public_key()], 2)
        # One current key cannot install a new set.
        status, out = await push(service, guard, make_bundle(POLICY_A, [A, new1, new2], 1, install=new_set))
        assert status == 1
        assert "unknown key id" in out
        status, out = await push(service, guard, make_bundle(POLICY_A, [A], 1, install=new_set))
        assert status == 1
        assert "2 required" in out
        assert (await push(service, guard, make_bundle(POLICY_A, [A, B], 1, install=new_set)))[0] == 0
        # From now on only the new set counts, also after a restart.
        restarted, _ = service_for(tmp_path)
        status, out = await push(restarted, guard, make_bundle(POLICY_B, [A, B], 2))
        assert status == 1
        assert "unknown key id" in out
        status, out = await push(restarted, guard, make_bundle(POLICY_B, [new1, new2], 1))
        assert status == 1
        assert "version 1 is not above 1" in out
        status, out = await push(restarted, guard, make_bundle(POLICY_B, [new1], 2))
        assert "1 valid signature(s) from trusted keys, 2 required" in out
        status, out = await push(restarted, guard, make_bundle(POLICY_B, [new1, new2], 2))
        assert status == 0, out
        assert guard.compiled.policy.users["op"].roles == ("engineer",)
        assert manager.store.current() == 3
        seclog.close()

    asyncio.run(main())


def test_a_meter_without_keys_reads_format_1_and_refuses_format_2(tmp_path: Path) -> None:
    async def main() -> None:
        configured = tmp_path / "policy.toml"
        configured.write_text(POLICY_A)
        manager = PolicyManager(configured, tmp_path, demo_accounts=False)
        manager.initial()
        service = PolicyService(manager)
        guard, seclog = make_guard(tmp_path)
        status, out = await push(service, guard, make_bundle(POLICY_B, [A], 1))
        assert status == 1
        assert "no policy signing keys configured" in out
        status, out = await push(service, guard, Bundle(policy_text("installer")))
        assert status == 0, out
        seclog.close()

    asyncio.run(main())


def test_kill_9_never_loses_a_recorded_version(tmp_path: Path) -> None:
    rng = random.Random(18)
    kid = "k" * 64
    printed = 0
    for _ in range(15):
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.daemon.gate_worker", str(tmp_path), kid],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.01, 0.15))
        worker.send_signal(signal.SIGKILL)
        out, _ = worker.communicate(timeout=10)
        done = [int(line) for line in out.split()]
        printed = max([printed, *done])
        # The file always parses, and holds at least every version whose commit returned.
        state = json.loads((tmp_path / "bundles.json").read_text())
        assert state["highest"][kid] >= printed
        printed = state["highest"][kid]
    assert printed > 15


@pytest.mark.parametrize("content", ["", "{", '{"highest": 3}'])
def test_a_corrupt_state_stops_the_meter_from_trusting_anything(tmp_path: Path, content: str) -> None:
    (tmp_path / "bundles.json").write_text(content)
    with pytest.raises(ConfigError, match="bundle state"):
        BundleGate(KeySet.of([A.public_key()], 1), METER, tmp_path)
