"""A fleet of real meterd daemons on 127.0.0.1 (own ports and state each) and an Ansible inventory for it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from meterd.policy.signed import SignedBundle
from tests.daemon.conftest import ROOT, RunningDaemon, free_port, keypair, policy_with, write_config
from tests.policy.signing import make_bundle

ANSIBLE = ROOT / "ansible"
PLAYBOOK_TIMEOUT = 600


@dataclass
class Meter:
    name: str
    port: int
    daemon: RunningDaemon
    state_dir: Path

    def store_version(self) -> int:
        return int((self.state_dir / "policy" / "current").read_text())


@dataclass
class Fleet:
    meters: list[Meter]
    keys: list[Ed25519PrivateKey]
    public: str
    inventory: Path
    directory: Path

    def bundle(self, name: str, operator_role: str, version: int, labels: Sequence[str]) -> Path:
        """Write a bundle for ``labels`` signed by the fleet's two keys (the meters' threshold)."""
        text = policy_with(self.public, operator_role)
        bundle: SignedBundle = make_bundle(text, self.keys, version, meters=(), labels=labels)
        path = self.directory / f"{name}.json"
        path.write_bytes(bundle.encode())
        return path

    def playbook(self, playbook: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "ANSIBLE_COLLECTIONS_PATH": str(ANSIBLE),
            "ANSIBLE_HOME": str(self.directory / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(self.directory / "ansible-tmp"),
            "ANSIBLE_FORKS": "10",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        return subprocess.run(
            [
                str(Path(sys.executable).parent / "ansible-playbook"),
                "-i",
                str(self.inventory),
                playbook,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=PLAYBOOK_TIMEOUT,
            check=False,
            env=env,
            cwd=self.directory,
        )


def start_fleet(
    tmp_path: Path,
    start_daemon: Callable[[Path], RunningDaemon],
    count: int,
    labels: Callable[[int], list[str]],
) -> Fleet:
    """Start ``count`` meters m01, m02, ... trusting two fresh keys (both must sign); wait until all are ready."""
    keys = [Ed25519PrivateKey.generate() for _ in range(2)]
    for i, key in enumerate(keys):
        (tmp_path / f"fleet-key-{i}.pub.pem").write_bytes(
            key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
    ssh_key, public = keypair(tmp_path)
    meters: list[Meter] = []
    for n in range(1, count + 1):
        name = f"m{n:02d}"
        directory = tmp_path / name
        directory.mkdir()
        configured = directory / "policy.toml"
        configured.write_text(policy_with(public, "operator"))
        port = free_port()
        # Not append-only: a scratch fleet's directories must be removable afterwards.
        config = write_config(
            directory, configured, ssh_port=port, extra="[security_log]\nappend_only_attr = false\n"
        )
        identity = (
            f'meter_id = "{name}"\nmeter_labels = {labels(n)!r}\npolicy_signing_threshold = 2\n'
            f'policy_signing_keys = ["{tmp_path}/fleet-key-0.pub.pem", "{tmp_path}/fleet-key-1.pub.pem"]\n'
        ).replace("'", '"')
        # demo_accounts off: nothing to hash at start, so ten meters start quickly on a small machine.
        text = config.read_text().replace("demo_accounts = true", "demo_accounts = false")
        config.write_text(text.replace("[daemon]\n", "[daemon]\n" + identity))
        meters.append(Meter(name, port, start_daemon(config), directory / "state"))
    known_hosts = tmp_path / "known_hosts"
    lines = []
    hosts = []
    for meter in meters:
        meter.daemon.wait_for("READY=1", timeout=120)
        host_key = (meter.state_dir / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
        lines.append(f"[127.0.0.1]:{meter.port} {host_key[0]} {host_key[1]}")
        hosts.append(f"    {meter.name}: {{ansible_host: 127.0.0.1, ansible_port: {meter.port}}}")
    known_hosts.write_text("\n".join(lines) + "\n")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "meters:\n  vars:\n    ansible_user: rbacmnt\n"
        f"    ansible_ssh_private_key_file: {ssh_key}\n    meterd_known_hosts: {known_hosts}\n"
        "  hosts:\n" + "\n".join(hosts) + "\n"
    )
    return Fleet(meters, keys, public, inventory, tmp_path)
