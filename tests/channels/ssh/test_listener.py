"""The listener's own duties: config, host keys, auth limits, login grace time, policy commands."""

from __future__ import annotations

import dataclasses
import socket
import stat
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from meterd.channels.ssh import LOADER, SshConfig, SshListener
from meterd.channels.ssh.hostkeys import HOST_KEY_NAME, load_or_create_host_key
from meterd.configspec import Base
from meterd.errors import ConfigError
from meterd.guard import Guard, Session
from meterd.policy.credentials import Credentials
from meterd.policy.model import Policy
from meterd.seclog import EventType
from meterd.tomlreader import Reader
from tests.channels.ssh.harness import Server


def test_config_defaults_bounds_and_unknown_keys(tmp_path: Path) -> None:
    errors: list[ConfigError] = []
    config = LOADER.load(Reader({}, "ssh", "meterd.toml", errors), {Base.CONFIG: tmp_path / "etc"})
    assert config == SshConfig()
    # Host keys are written: below the state directory, never beside the configuration file.
    assert config.host_key_path(tmp_path / "state") == tmp_path / "state" / "ssh"
    assert errors == []
    relative = LOADER.load(
        Reader({"host_key_dir": "keys/ssh"}, "ssh", "meterd.toml", errors), {Base.CONFIG: tmp_path / "etc"}
    )
    assert relative.host_key_path(tmp_path / "state") == tmp_path / "state" / "keys" / "ssh"
    config = LOADER.load(
        Reader(
            {"port": 70000, "listne": "0.0.0.0", "host_key_dir": "/etc/meterd/keys"},
            "ssh",
            "meterd.toml",
            errors,
        ),
        {Base.CONFIG: tmp_path},
    )
    assert config.port == 2222
    assert config.host_key_path(tmp_path / "state") == Path("/etc/meterd/keys")
    rendered = [e.render() for e in errors]
    assert 'meterd.toml: ssh.listne: unknown key "listne"; did you mean "listen"?' in rendered
    assert any("ssh.port: must be between 0 and 65535" in r for r in rendered)


def test_the_host_key_is_made_once_kept_private_and_reused(tmp_path: Path) -> None:
    first = load_or_create_host_key(tmp_path / "ssh")
    path = tmp_path / "ssh" / HOST_KEY_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ssh").stat().st_mode) == 0o700
    again = load_or_create_host_key(tmp_path / "ssh")
    assert again.public_data == first.public_data
    assert first.get_algorithm() == "ssh-ed25519"


def test_too_many_failed_attempts_disconnect(server: Server) -> None:
    mark = server.mark()
    others = [k for name, k in server.keys.items() if name != "viewer1"][:7]
    extra: list[str] = []
    for key in [*others[1:], server.keys["viewer1"]]:
        extra += ["-i", str(key)]
    result = server.ssh("viewer1", "whoami", key=others[0], extra=extra)
    # The client offers the seven wrong keys first; the sixth failure ends the connection.
    assert result.returncode == 255
    failures = [
        r for r in server.since(mark) if r.principal == "viewer1" and r.event is EventType.LOGIN_FAILURE
    ]
    assert len(failures) == 6


def test_a_login_looks_up_no_host_name(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    # asyncssh re-reads its options when a client names its user and, unless told the GSSAPI
    # host, asks for this host's name each time (getfqdn: a name-service query that waits for
    # an unreachable resolver's timeout, on a meter that offers no GSSAPI at all).
    asked: list[str] = []

    def gethostname() -> str:
        asked.append("gethostname")
        return "meter"

    def getfqdn(name: str = "") -> str:
        asked.append("getfqdn")
        return name or "meter"

    monkeypatch.setattr(socket, "gethostname", gethostname)
    monkeypatch.setattr(socket, "getfqdn", getfqdn)
    result = server.ssh("viewer1", "whoami")
    assert result.returncode == 0, result.stderr
    assert asked == []


def test_a_client_that_never_authenticates_is_dropped(server: Server) -> None:
    assert server.runtime is not None
    config = SshConfig(port=0, host_key_dir=server.root / "state" / "ssh", login_grace_time=1)
    listener = SshListener(config, server.runtime)
    server.call(listener.start())
    try:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
            start = time.monotonic()
            sock.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            received = b""
            while chunk := sock.recv(4096):
                received += chunk
            assert received.startswith(b"SSH-2.0-")
            assert 0.5 < time.monotonic() - start < 8
    finally:
        server.call(listener.stop())


class StubPolicies:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Sequence[str], bytes]] = []

    async def run(
        self, guard: Guard, session: Session, argv: Sequence[str], payload: bytes
    ) -> tuple[int, str]:
        self.calls.append((session.principal, argv, payload))
        return 0, "pushed\n"

    async def edit(self, guard: Guard, session: Session, policy: Policy, how: str) -> tuple[int, str]:
        return 1, "not here"

    async def set_credentials(
        self, guard: Guard, session: Session, credentials: Credentials, how: str
    ) -> tuple[int, str]:
        return 1, "not here"


def test_policy_commands_go_to_the_daemons_policy_service(server: Server) -> None:
    result = server.ssh("admin", "meterd-policy push", stdin="[policy]\n")
    assert result.returncode == 2
    assert "not available" in result.stderr
    assert server.listener is not None
    runtime = server.listener.runtime
    stub = StubPolicies()
    server.listener.runtime = dataclasses.replace(runtime, policies=stub)
    try:
        result = server.ssh(
            "admin", "meterd-policy push --comment 'new roles'", stdin="[policy]\nname = 'x'\n"
        )
    finally:
        server.listener.runtime = runtime
    assert result.returncode == 0
    assert result.stdout == "pushed\n"
    assert stub.calls == [("admin", ["push", "--comment", "new roles"], b"[policy]\nname = 'x'\n")]
