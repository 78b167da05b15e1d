"""A running meterd SSH listener in a background event loop, and the real OpenSSH clients to talk to it."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from meterd.channels.ssh import SshConfig, SshListener
from meterd.credentials import hash_secret
from meterd.guard import Guard
from meterd.guard.observer import GuardObserver
from meterd.meter.simulation import SimulatedMeter
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.runtime import Runtime
from meterd.seclog import LogConfig, Record, SecurityLog, read_records

T = TypeVar("T")

PASSWORD = "Horse-7-" + secrets.token_urlsafe(12)  # made per run: no credential in the tree
#: user -> roles; every user gets PASSWORD and an ed25519 key made by ssh-keygen.
USERS: dict[str, list[str]] = {
    "viewer1": ["viewer"],
    "operator1": ["operator"],
    "engineer1": ["engineer"],
    "installer1": ["installer"],
    "installer2": ["installer"],
    "secadm1": ["secadm"],
    "auditor": ["secaud"],
    "admin": ["rbacmnt"],
    "sftpro": ["files_ro"],
    "sftprw": ["files_rw"],
    "nobody": ["clock_only"],
    "lockme": ["viewer"],
    "revokee": ["engineer"],
    "pwuser": ["viewer"],
    "termonly": ["terminal_only"],
}
ROLES = {
    "files_ro": {"permissions": ["fs_read_only"]},
    "files_rw": {"permissions": ["fs_read_write"]},
    "clock_only": {"permissions": ["time_sync"]},
    "terminal_only": {"permissions": ["terminal_access"]},
}
SSH_BASE = [
    "-F",
    "/dev/null",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=10",
]
#: A password login only: no key from the agent or ~/.ssh is offered, one prompt.
PASSWORD_LOGIN = [
    "-o",
    "PubkeyAuthentication=no",
    "-o",
    "PreferredAuthentications=password,keyboard-interactive",
    "-o",
    "NumberOfPasswordPrompts=1",
]
CLIENT_TIMEOUT = 30


def make_key(directory: Path, name: str) -> tuple[Path, str]:
    """Return (private key path, public key line) made by ssh-keygen."""
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
        check=True,
        timeout=CLIENT_TIMEOUT,
    )
    return path, path.with_suffix(".pub").read_text().strip()


def policy_data(keys: dict[str, str], hashed: str, **settings: Any) -> dict[str, Any]:
    return {
        "policy": {"name": "ssh tests", "version": 1},
        "settings": {"login_failure_threshold": 3, "login_lockout": 600, **settings},
        "roles": ROLES,
        "users": {
            name: {"roles": roles, "password": hashed, "ssh_keys": [keys[name]]}
            for name, roles in USERS.items()
        },
        "constraints": {"dual_control": ["master_reset"]},
    }


@dataclass
class Server:
    """The listener, its runtime and the loop it runs in."""

    root: Path
    keys: dict[str, Path]
    key_lines: dict[str, str]
    hashed: str
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    listener: SshListener | None = None
    runtime: Runtime | None = None
    clock: list[float] = field(default_factory=lambda: [1000.0])
    initial_key: bytes = b""
    #: The log's budgets of unauthenticated refusals (per source, in total): ample unless a
    #: test looks at the budget itself.
    unauthenticated_records: tuple[int, int] = (100_000, 100_000)
    observer: GuardObserver | None = None
    _thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self.listener is not None
        return self.listener.port

    @property
    def log_dir(self) -> Path:
        return self.root / "seclog"

    @property
    def guard(self) -> Guard:
        assert self.runtime is not None
        return self.runtime.guard

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and return its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=60)

    def start(self, **settings: Any) -> None:
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self._start(settings))

    async def _start(self, settings: dict[str, Any]) -> None:
        # One server (and a test clock that never refills budgets) stands for a whole module's
        # clients on 127.0.0.1: every refusal these tests look for must be recorded on its own.
        # The budgets themselves are tested in tests/guard and tests/daemon/test_log_flood.py.
        per_source, total = self.unauthenticated_records
        log_config = LogConfig(
            append_only_attr=False,
            unauthenticated_records=per_source,
            unauthenticated_records_total=total,
        )
        self.initial_key = SecurityLog.init(self.log_dir, log_config)
        seclog = SecurityLog.open(self.log_dir, log_config)
        compiled = compile_policy(load_policy(policy_data(self.key_lines, self.hashed, **settings)))
        guard = Guard(compiled, seclog, observer=self.observer, monotonic=lambda: self.clock[0])
        self.runtime = Runtime(guard, SimulatedMeter(self.root / "state"), self.root / "state")
        config = SshConfig(port=0, host_key_dir=self.root / "state" / "ssh", login_grace_time=10)
        self.listener = SshListener(config, self.runtime)
        await self.listener.start()

    def stop(self) -> None:
        if self.listener is not None:
            self.call(self.listener.stop())
        if self.runtime is not None:
            self.runtime.guard.seclog.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self.loop.close()

    # -- clients ----------------------------------------------------------------

    def ssh_key_args(self, user: str, key: Path | None = None) -> list[str]:
        """The OpenSSH client's command line up to the destination, logging in with a key."""
        return [
            "ssh",
            *SSH_BASE,
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            str(key or self.keys[user]),
            "-p",
            str(self.port),
        ]

    def ssh(
        self,
        user: str,
        command: str | None,
        *,
        stdin: str = "",
        extra: Iterable[str] = (),
        key: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the OpenSSH client with a key (BatchMode: no password prompts)."""
        args = [*self.ssh_key_args(user, key), *extra, f"{user}@127.0.0.1"]
        if command is not None:
            args.append(command)
        return subprocess.run(
            args, input=stdin, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False
        )

    def ssh_password(
        self, user: str, password: str, command: str | None = "whoami", stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        """Run the OpenSSH client with a password, typed by sshpass."""
        args = [
            "sshpass",
            "-p",
            password,
            "ssh",
            *SSH_BASE,
            *PASSWORD_LOGIN,
            "-p",
            str(self.port),
            f"{user}@127.0.0.1",
        ]
        if command is not None:
            args.append(command)
        return subprocess.run(
            args, input=stdin, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False
        )

    def sftp_args(self, user: str, *options: str) -> list[str]:
        """The ``sftp`` command line for ``user`` with their key, ``options`` before the destination."""
        return [
            "sftp",
            *SSH_BASE,
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            str(self.keys[user]),
            "-P",
            str(self.port),
            *options,
            f"{user}@127.0.0.1",
        ]

    def sftp(self, user: str, batch: str) -> subprocess.CompletedProcess[str]:
        """Run ``sftp -b -`` with a key; each batch line prefixed with ``-`` may fail without stopping."""
        args = self.sftp_args(user, "-b", "-")
        return subprocess.run(
            args, input=batch, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False
        )

    # -- the security log -----------------------------------------------------------

    def records(self) -> list[Record]:
        return read_records(self.log_dir)

    def mark(self) -> int:
        """The seq of the newest record: records after it belong to what follows."""
        records = self.records()
        return records[-1].seq if records else 0

    def since(self, mark: int) -> list[Record]:
        return [r for r in self.records() if r.seq > mark]

    def until(self, mark: int, done: Callable[[list[Record]], bool], timeout: float = 5.0) -> list[Record]:
        """The records after ``mark`` once ``done`` holds for them (the client may exit before the
        server has written its logout or a refusal record), or as they are at the deadline."""
        deadline = time.monotonic() + timeout
        records = self.since(mark)
        while not done(records) and time.monotonic() < deadline:
            time.sleep(0.02)
            records = self.since(mark)
        return records


def build(root: Path) -> Server:
    keys: dict[str, Path] = {}
    lines: dict[str, str] = {}
    keydir = root / "keys"
    keydir.mkdir(parents=True)
    for name in USERS:
        keys[name], lines[name] = make_key(keydir, name)
    return Server(root, keys, lines, hash_secret(PASSWORD, log2_n=14))


def have_clients() -> bool:
    return all(shutil.which(c) for c in ("ssh", "sftp", "ssh-keygen", "sshpass"))


def area(server: Server) -> Path:
    assert server.runtime is not None
    return server.runtime.meter.file_area
