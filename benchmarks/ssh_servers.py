"""The SSH servers ``bench_ssh.py`` compares, on loopback, with the same key exchange and cipher.

* **meterd**: the SSH listener as the daemon runs it (the guard, the security
  log, the meter shell), in an event loop of its own thread;
* **asyncssh**: plain asyncssh in the same kind of loop, with no enforcement:
  SFTP chrooted to a directory, and a command answered with as much fixed
  text as ``show readings`` prints and no check at all.  Its logins are
  acknowledged at once like meterd's (:class:`PlainServer`), so the two
  differ only by what meterd enforces;
* **openssh**: ``sshd`` with its ``sftp-server`` on a temporary config (a
  generated host key, a free port on 127.0.0.1), as the current user.  Its
  options: ``UseDNS no``, ``UsePAM no``, only public-key login,
  ``StrictModes no`` (the key file is in a temporary directory), the same
  cipher and key exchange, and ``SetEnv SHLVL=1``; everything else is sshd's
  default (privilege separation, a re-exec per connection, no GSSAPI).  sshd
  runs a command through the user's login shell, and Debian's bash then reads
  ``/etc/bash.bashrc`` and ``~/.bashrc`` unless its shell level says it is
  nested: without ``SHLVL`` the figure timed the user's dot files (190 ms of
  a version manager's set-up on one machine), not OpenSSH.  Twice per login
  a Nagle algorithm still holds a packet until the peer's delayed
  acknowledgement (40 ms each): the client's after ``NEWKEYS`` (meterd
  acknowledges at once, see ``meterd/channels/ssh/acks.py``) and sshd's after
  its host-key notice (asyncio's sockets have ``TCP_NODELAY``).  Both are
  OpenSSH's own behaviour, so they stay in its figure (about 80 ms of it).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncssh

from meterd.channels.ssh import SshConfig, SshListener
from meterd.channels.ssh.acks import PromptAcks
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
#: What the plain server answers to any command: as long as meterd's ``show readings``.
PLAIN_ANSWER = "reading: 0.000\n" * 29


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


class PlainServer(asyncssh.SSHServer):
    """asyncssh's default server, but acknowledging a logging-in client's packets at once, as meterd does."""

    def __init__(self) -> None:
        self._acks: PromptAcks | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._acks = PromptAcks(conn)

    def auth_completed(self) -> None:
        if self._acks is not None:
            self._acks.stop()


async def plain_session(
    stdin: asyncssh.SSHReader[str], stdout: asyncssh.SSHWriter[str], stderr: asyncssh.SSHWriter[str]
) -> None:
    stdout.write(PLAIN_ANSWER)
    cast("asyncssh.SSHServerChannel[str]", stdout.channel).exit(0)


def start_plain(loop: Loop, root: Path, authorized: Path) -> asyncssh.SSHAcceptor:
    async def start() -> asyncssh.SSHAcceptor:
        return await asyncssh.listen(
            "127.0.0.1",
            0,
            server_factory=PlainServer,
            server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
            authorized_client_keys=str(authorized),
            session_factory=plain_session,
            encoding="utf-8",
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
        # sshd runs the command through the user's login shell; Debian's bash reads the rc files
        # for a command from sshd only at shell level 1 (see the module docstring).
        "SetEnv SHLVL=1\n"
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
