"""The booted meter as the tests reach it: root in the guest through its agent, users over OpenSSH."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from scripts.rig_qga import Result, run

STATE = "/var/lib/meterd"
RIG = Path(__file__).resolve().parents[2] / "scripts" / "rig.sh"
ARM64 = os.environ.get("ARCH", "x86_64") in ("arm64", "aarch64")
#: How much longer everything takes in the emulated arm64 guest (TCG, cortex-a53).
SLOW = 4 if ARM64 else 1
#: The guest's console (the host's console.log): the first PL011 UART on arm64's virt machine.
CONSOLE = "/dev/ttyAMA0" if ARM64 else "/dev/ttyS0"


@dataclass
class Meter:
    """One booted rig guest and its forwarded ports."""

    run_dir: Path
    ssh_port: int
    modbus_port: int
    modbus_tls_port: int
    keys_dir: Path
    env: dict[str, str]
    _credentials: dict[str, list[str]] = field(default_factory=dict)

    def exec(
        self, *argv: str, timeout: float = 60.0, check: bool = True, stdin: bytes | None = None
    ) -> Result:
        """Run ``argv`` in the guest as root (``stdin`` its standard input)."""
        result = run(str(self.run_dir / "qga.sock"), list(argv), timeout * SLOW, stdin)
        if check:
            assert result.status == 0, (argv, result)
        return result

    def sh(self, command: str, timeout: float = 60.0, check: bool = True) -> str:
        """Run a shell command line in the guest as root; its standard output."""
        return self.exec("/bin/sh", "-c", command, timeout=timeout, check=check).stdout.decode()

    def unit(self, *props: str) -> dict[str, str]:
        """``systemctl show meterd`` for ``props``."""
        out = self.sh("systemctl show meterd " + " ".join(f"-p {p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_active(self, timeout: float = 180.0) -> None:
        """Wait until systemd reports meterd active (after READY=1), bounded."""
        deadline = time.monotonic() + timeout * SLOW
        while self.unit("ActiveState")["ActiveState"] != "active":
            assert time.monotonic() < deadline, self.sh("systemctl status meterd --no-pager", check=False)
            time.sleep(0.5)

    def credentials(self, user: str) -> list[str]:
        """The demo account's password, panel PIN and key path in the guest."""
        if not self._credentials:
            text = self.sh(f"cat {STATE}/demo-credentials.txt")
            for line in text.splitlines()[1:]:
                fields = line.split()
                self._credentials[fields[0]] = fields[1:]
        return self._credentials[user]

    def key(self, user: str) -> Path:
        """The demo account's private SSH key, copied to the host (0600)."""
        path = self.keys_dir / user
        if not path.exists():
            path.touch(mode=0o600)
            path.write_bytes(self.exec("cat", self.credentials(user)[2]).stdout)
        return path

    def known_hosts(self) -> Path:
        """A known_hosts file holding the meter's host key, read through the guest agent."""
        path = self.keys_dir / "known_hosts"
        if not path.exists():
            self.trust_host_key(f"{STATE}/ssh")
        return path

    def trust_host_key(self, key_dir: str) -> None:
        """Trust (only) the host key meterd keeps in ``key_dir`` in the guest."""
        key = self.sh(f"cat {key_dir}/ssh_host_ed25519_key.pub").split()
        (self.keys_dir / "known_hosts").write_text(f"[127.0.0.1]:{self.ssh_port} {key[0]} {key[1]}\n")

    def _ssh_options(self, user: str) -> list[str]:
        return [
            "-F", "/dev/null",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts()}",
            "-o", f"ConnectTimeout={30 * SLOW}",
            "-i", str(self.key(user)),
        ]  # fmt: skip

    def ssh(self, user: str, command: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """OpenSSH ``ssh`` on the host, logging in with the account's demo key."""
        argv = ["ssh", *self._ssh_options(user), "-p", str(self.ssh_port), f"{user}@127.0.0.1", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout * SLOW, check=False)

    def sftp(self, user: str, batch: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """OpenSSH ``sftp`` on the host running ``batch``."""
        argv = ["sftp", *self._ssh_options(user), "-P", str(self.ssh_port), "-b", "-", f"{user}@127.0.0.1"]
        return subprocess.run(
            argv, input=batch, capture_output=True, text=True, timeout=timeout * SLOW, check=False
        )

    def powercycle(self) -> None:
        """Cut QEMU's power (SIGKILL) and boot the same disk until meterd is active again."""
        done = subprocess.run(
            ["bash", str(RIG), "powercycle"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900 * SLOW,
            check=False,
        )
        assert done.returncode == 0, done.stderr
