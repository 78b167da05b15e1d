"""The servers ``bench_ssh.py`` measures on loopback: meterd's SSH listener, plain asyncssh, OpenSSH ``sshd``.

The two Python servers run on one event loop in a background thread
(:class:`Loop`); the clients are OpenSSH processes.  Every server uses the
same key exchange and cipher (:data:`KEX`, :data:`CIPHER`), host key type and
client key (ed25519).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from meterd.channels.ssh import SshConfig, SshListener
from meterd.guard import Guard
from meterd.meter.simulation import SimulatedMeter
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.runtime import Runtime
from meterd.seclog import LogConfig, SecurityLog

T = TypeVar("T")
CIPHER = "aes128-gcm@openssh.com"
KEX = "curve25519-sha256"
SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")


class Loop:
    """An event loop in a background thread (the servers run there, the clients are processes)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def start_meterd(loop: Loop, root: Path, key_line: str) -> tuple[SshListener, SecurityLog]:
    async def start() -> tuple[SshListener, SecurityLog]:
        config = LogConfig(append_only_attr=False)
        SecurityLog.init(root / "seclog", config)
        seclog = SecurityLog.open(root / "seclog", config)
        policy = load_policy({"users": {"bench": {"roles": ["engineer"], "ssh_keys": [key_line]}}})
        runtime = Runtime(
            Guard(compile_policy(policy), seclog), SimulatedMeter(root / "state"), root / "state"
        )
        listener = SshListener(SshConfig(port=0, host_key_dir=root / "state" / "ssh"), runtime)
        await listener.start()
        return listener, seclog

    return loop.call(start())


def start_plain(loop: Loop, root: Path, authorized: Path) -> asyncssh.SSHAcceptor:
    async def start() -> asyncssh.SSHAcceptor:
        return await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
            authorized_client_keys=str(authorized),
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=bytes(root)),
            sftp_version=3,
            allow_scp=False,
        )

    return loop.call(start())


def start_sshd(root: Path, authorized: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    if not SSHD.exists():
        return None
    host_key = root / "sshd_host_key"
    keygen(host_key)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {authorized}\n"
        f"PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PidFile none\nSubsystem sftp {SFTP_SERVER}\nCiphers {CIPHER}\nKexAlgorithms {KEX}\n"
        f"UseDNS no\nLogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege-separation directory sshd insists on
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    return None
