"""A real meterd process per test: its own state directory, free loopback ports, a notify socket."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RunningDaemon:
    process: subprocess.Popen[str]
    notify: socket.socket
    state_dir: Path
    config: Path
    #: The daemon's stderr: a file, not a pipe, so a long test never blocks a chatty daemon.
    stderr_path: Path
    messages: list[str] = field(default_factory=list)

    def wait_for(self, key: str, timeout: float = READY_TIMEOUT) -> str:
        """Wait for a notify message containing ``key`` (e.g. "READY=1"); return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if key in message:
                    self.messages.remove(message)
                    return message
            if self.process.poll() is not None and not self._drain():
                raise AssertionError(f"meterd exited with {self.process.returncode}: {self.stderr()}")
            self.notify.settimeout(max(0.05, min(0.5, deadline - time.monotonic())))
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except TimeoutError:
                continue
        raise AssertionError(f"no {key} from meterd within {timeout} s; got {self.messages}")

    def _drain(self) -> bool:
        """Read whatever the exited daemon left in the socket; True if anything new arrived."""
        before = len(self.messages)
        self.notify.setblocking(False)
        try:
            while True:
                self.messages.append(self.notify.recv(4096).decode())
        except BlockingIOError:
            return len(self.messages) > before
        finally:
            self.notify.setblocking(True)

    def stderr(self) -> str:
        if self.process.poll() is None:
            return ""
        return self.stderr_path.read_text()

    def stop(self, timeout: float = 20.0) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        return code, time.monotonic() - started


def write_config(directory: Path, policy: Path, *, ssh_port: int | None = None, extra: str = "") -> Path:
    config = directory / "meterd.toml"
    sections = [
        "[daemon]",
        f'state_dir = "{directory / "state"}"',
        f'policy = "{policy}"',
        "demo_accounts = true",
        "shutdown_timeout = 5",
        "sweep_interval = 1",
    ]
    if ssh_port is not None:
        sections += ["[ssh]", 'listen = "127.0.0.1"', f"port = {ssh_port}"]
    config.write_text("\n".join(sections) + "\n" + extra)
    return config


def embedded_default(checkout: Path) -> tuple[Path, dict[int, int]]:
    """Copy the embedded default into ``checkout``, laid out as in the repository.

    Its relative paths then resolve as they do from the checkout (state in
    ``checkout/var``); every port is replaced by a free one so the copy never
    collides with a ``make run`` on the same machine.

    Returns:
        The copied ``meterd.toml`` and ``{port in the original: port in the copy}``.
    """
    (checkout / "config" / "daemon").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "policy.toml", checkout / "config" / "policy.toml")
    ports: dict[int, int] = {}

    def replace(match: re.Match[str]) -> str:
        ports[int(match.group(2))] = free_port()
        return f"{match.group(1)}{ports[int(match.group(2))]}"

    text = (ROOT / "config" / "daemon" / "meterd.toml").read_text()
    config = checkout / "config" / "daemon" / "meterd.toml"
    config.write_text(re.sub(r"(?m)^(port = )(\d+)", replace, text))
    return config, ports


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[object]:
    """Start meterd on a configuration; optionally with its state elsewhere, a command prefix, a cwd."""
    started: list[RunningDaemon] = []

    def start(
        config: Path, *, state_dir: Path | None = None, prefix: Sequence[str] = (), cwd: Path = ROOT
    ) -> RunningDaemon:
        notify_path = tmp_path / f"notify-{len(started)}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify_path))
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "2000000"}
        stderr_path = tmp_path / f"meterd-{len(started)}.stderr"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                [*prefix, sys.executable, "-m", "meterd.daemon.main", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
                env=env,
                cwd=cwd,
            )
        daemon = RunningDaemon(process, sock, state_dir or tmp_path / "state", config, stderr_path)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(10)
        daemon.notify.close()


def keypair(tmp_path: Path) -> tuple[Path, str]:
    key = tmp_path / "cae_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cae", "-f", str(key)], check=True)
    return key, key.with_suffix(".pub").read_text().strip()


def policy_with(public_key: str, operator_role: str) -> str:
    return f"""
[policy]
name = "push test"
version = 1

[constraints]
separation_of_duties = [["user_management", "security_logs_access"]]

[users.rbacmnt]
roles = ["rbacmnt"]
ssh_keys = ["{public_key}"]

[users.operator]
roles = ["{operator_role}"]
"""


def start_with_admin_key(
    tmp_path: Path, start_daemon: Callable[[Path], RunningDaemon]
) -> tuple[RunningDaemon, Path, str, int]:
    """Start meterd (SSH on a free port) whose rbacmnt user logs in with a fresh key; wait for READY."""
    key, public = keypair(tmp_path)
    configured = tmp_path / "policy.toml"
    configured.write_text(policy_with(public, "operator"))
    port = free_port()
    daemon = start_daemon(write_config(tmp_path, configured, ssh_port=port))
    daemon.wait_for("READY=1")
    return daemon, key, public, port
