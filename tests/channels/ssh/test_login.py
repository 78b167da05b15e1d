"""Login over SSH with the real OpenSSH client: keys, passwords, roles, lockout, forwarding, sessions."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.seclog import EventType, Record
from tests.channels.ssh.harness import CLIENT_TIMEOUT, PASSWORD, Server, policy_data


def events(records: list[Record], principal: str) -> list[EventType]:
    return [r.event for r in records if r.principal == principal]


def logged_out(user: str) -> Callable[[list[Record]], bool]:
    return lambda records: EventType.LOGOUT_MANUAL in events(records, user)


def failures(records: list[Record], principal: str) -> list[dict[str, object]]:
    return [
        dict(r.detail) for r in records if r.principal == principal and r.event is EventType.LOGIN_FAILURE
    ]


def test_key_login_opens_and_closes_a_recorded_session(server: Server) -> None:
    mark = server.mark()
    result = server.ssh("viewer1", "whoami")
    assert result.returncode == 0, result.stderr
    records = [r for r in server.until(mark, logged_out("viewer1")) if r.principal == "viewer1"]
    assert [r.event for r in records] == [
        EventType.LOGIN_SUCCESS,
        EventType.ACCESS_DECISION,
        EventType.LOGOUT_MANUAL,
    ]
    assert all(r.channel.value == "ssh" and r.source.startswith("127.0.0.1:") for r in records)


def test_password_login(server: Server) -> None:
    mark = server.mark()
    assert server.ssh_password("engineer1", PASSWORD, "whoami").returncode == 0
    assert EventType.LOGIN_SUCCESS in events(server.since(mark), "engineer1")


def test_a_wrong_password_is_refused_and_recorded(server: Server) -> None:
    mark = server.mark()
    result = server.ssh_password("operator1", "not-the-password")
    assert result.returncode != 0
    assert failures(server.since(mark), "operator1") == [{"reason": "bad_credentials", "method": "password"}]


def test_an_unknown_user_is_refused_and_recorded(server: Server) -> None:
    mark = server.mark()
    assert server.ssh_password("mallory", PASSWORD).returncode != 0
    assert failures(server.since(mark), "mallory") == [{"reason": "bad_credentials", "method": "password"}]


def test_an_unlisted_key_is_refused_and_recorded(server: Server) -> None:
    mark = server.mark()
    result = server.ssh("viewer1", "whoami", key=server.keys["admin"])
    assert result.returncode == 255
    assert "Permission denied" in result.stderr
    assert failures(server.since(mark), "viewer1") == [{"reason": "bad_credentials", "method": "publickey"}]


def test_login_needs_terminal_access(server: Server) -> None:
    for user in ("nobody", "sftpro"):
        mark = server.mark()
        result = server.ssh(user, "show readings")
        assert result.returncode == 1
        assert "denied: terminal_access" in result.stderr
        records = [r for r in server.since(mark) if r.principal == user]
        assert [r.event for r in records] == [EventType.PERMISSION_DENIED, EventType.LOGIN_FAILURE]
        assert records[1].detail["reason"] == "not_permitted"


def test_sftp_only_roles_may_use_sftp(server: Server) -> None:
    assert server.sftp("sftpro", "ls /\n").returncode == 0
    mark = server.mark()
    assert server.sftp("nobody", "ls /\n").returncode != 0
    assert EventType.LOGIN_FAILURE in events(server.since(mark), "nobody")


def test_lockout_after_repeated_failures_then_unlock(server: Server) -> None:
    mark = server.mark()
    for _ in range(3):
        assert server.ssh_password("lockme", "wrong-password-1").returncode != 0
    records = server.since(mark)
    assert EventType.ACCOUNT_LOCKED in events(records, "lockme")
    # Locked: the right password gets the same answer as a wrong one, and so does the key.
    mark = server.mark()
    right = server.ssh_password("lockme", PASSWORD)
    wrong = server.ssh_password("lockme", "wrong-password-1")
    assert right.returncode == wrong.returncode != 0
    assert (right.stdout, right.stderr) == (wrong.stdout, wrong.stderr)
    key = server.ssh("lockme", "whoami")
    assert key.returncode == 255
    reasons = [f["reason"] for f in failures(server.since(mark), "lockme")]
    assert reasons.count("locked") >= 3
    mark = server.mark()
    result = server.ssh("admin", "user unlock lockme")
    assert result.returncode == 0
    assert "user lockme unlocked" in result.stdout
    assert any(r.permission == "user_management" for r in server.since(mark))
    assert server.ssh_password("lockme", PASSWORD).returncode == 0


def test_unknown_users_cost_as_much_as_known_ones(server: Server) -> None:
    def timed(user: str) -> float:
        start = time.perf_counter()
        server.ssh_password(user, "wrong-password-2")
        return time.perf_counter() - start

    known = min(timed("auditor") for _ in range(2))
    unknown = min(timed("nosuchuser") for _ in range(2))
    # Unknown names run the full-strength dummy check, at least as slow as a real one.
    assert unknown >= known * 0.8
    assert server.ssh("admin", "user unlock auditor").returncode == 0


def denied(records: list[Record]) -> list[Record]:
    return [r for r in records if r.event is EventType.PERMISSION_DENIED]


def test_port_forwarding_is_refused_and_recorded(server: Server) -> None:
    mark = server.mark()
    local = server.ssh("viewer1", None, extra=["-W", "127.0.0.1:9"])
    assert local.returncode == 255
    remote = server.ssh("viewer1", "whoami", extra=["-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"])
    assert remote.returncode == 255
    refused = [
        r.detail["refused"]
        for r in server.until(mark, lambda rs: len(denied(rs)) >= 2)
        if r.principal == "viewer1" and r.event is EventType.PERMISSION_DENIED
    ]
    assert "port_forwarding" in refused
    assert "remote_forwarding" in refused


def ssh_with_env(
    server: Server, user: str, extra: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``server.ssh(user, "whoami", extra=extra)`` with ``env`` added to a copy of the environment
    from which any agent or X11 display of the machine running the tests has been removed."""
    args = [*server.ssh_key_args(user), *extra, f"{user}@127.0.0.1", "whoami"]
    base = {k: v for k, v in os.environ.items() if k not in {"SSH_AUTH_SOCK", "DISPLAY", "XAUTHORITY"}}
    return subprocess.run(
        args, env={**base, **env}, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False
    )


@pytest.fixture
def agent_socket() -> Iterator[Path]:
    """The socket of a real ``ssh-agent`` (no keys), stopped after the test."""
    if shutil.which("ssh-agent") is None:
        pytest.skip("ssh-agent is needed")
    # A short directory: a Unix socket path must fit in about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="agent-") as directory:
        socket = Path(directory) / "agent.sock"
        agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket)], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not socket.exists() and time.monotonic() < deadline and agent.poll() is None:
                time.sleep(0.02)
            assert socket.exists(), "ssh-agent did not start"
            yield socket
        finally:
            agent.terminate()
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()


def refusals(records: list[Record], principal: str, what: str) -> list[dict[str, object]]:
    return [
        dict(r.detail)
        for r in records
        if r.principal == principal
        and r.event is EventType.PERMISSION_DENIED
        and r.detail.get("refused") == what
    ]


def test_agent_forwarding_is_refused_and_recorded(server: Server, agent_socket: Path) -> None:
    mark = server.mark()
    result = ssh_with_env(server, "viewer1", ["-v", "-A"], {"SSH_AUTH_SOCK": str(agent_socket)})
    assert result.returncode == 0, result.stderr
    assert "user: viewer1" in result.stdout
    # The client did ask (it asks without wanting a reply, so it prints no refusal) ...
    assert "Requesting authentication agent forwarding" in result.stderr
    # ... and the server refused and recorded it; no record means asyncssh no longer routes the
    # request through the connection methods MeterSSHServer.connection_made replaces.
    records = server.until(mark, lambda rs: bool(refusals(rs, "viewer1", "agent_forwarding")))
    assert refusals(records, "viewer1", "agent_forwarding") == [{"refused": "agent_forwarding"}], (
        "agent forwarding request not recorded"
    )
    assert all(r.channel.value == "ssh" and r.source.startswith("127.0.0.1:") for r in denied(records))


def test_x11_forwarding_is_refused_and_recorded(server: Server, tmp_path: Path) -> None:
    mark = server.mark()
    # No xauth program (XAuthLocation points nowhere) and a display without an X server:
    # trusted forwarding (ssh -Y) then sends the x11-req with made-up authentication data, on
    # any machine.  (Untrusted, ssh -X, would need xauth and a real X server to ask at all.)
    # Screen 1, to see the screen number recorded.
    env = {"DISPLAY": "127.0.0.1:99.1", "XAUTHORITY": str(tmp_path / "no-xauthority")}
    extra = ["-v", "-o", "ForwardX11=yes", "-o", "ForwardX11Trusted=yes"]
    extra += ["-o", f"XAuthLocation={tmp_path / 'no-xauth'}"]
    result = ssh_with_env(server, "viewer1", extra, env)
    assert result.returncode == 0, result.stderr
    assert "user: viewer1" in result.stdout
    assert "using fake authentication data for X11 forwarding" in result.stderr, result.stderr
    assert "Requesting X11 forwarding" in result.stderr
    # x11-req wants a reply: the client sees the refusal ...
    assert "X11 forwarding request failed on channel 0" in result.stderr
    # ... and the server recorded it; no record means asyncssh no longer routes the request
    # through the connection method MeterSSHServer.connection_made replaces.
    records = server.until(mark, lambda rs: bool(refusals(rs, "viewer1", "x11_forwarding")))
    # The protocol name and screen only: the client's cookie is a secret and stays out of the log.
    assert refusals(records, "viewer1", "x11_forwarding") == [
        {"refused": "x11_forwarding", "auth_proto": "MIT-MAGIC-COOKIE-1", "screen": 1}
    ], "X11 forwarding request not recorded"


def test_other_subsystems_are_refused(server: Server) -> None:
    result = server.ssh("viewer1", "netconf", extra=["-s"])
    assert result.returncode == 1
    assert "not available" in result.stderr


class Interactive:
    """An interactive ``ssh`` session driven line by line."""

    def __init__(self, server: Server, user: str) -> None:
        args = [*server.ssh_key_args(user), f"{user}@127.0.0.1"]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def until(self, text: str, timeout: float = 15) -> str:
        assert self.proc.stdout is not None
        seen = ""
        deadline = time.monotonic() + timeout
        while text not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                chunk = self.proc.stdout.readline()
                if not chunk:
                    break
                seen += chunk
        return seen

    def finish(self) -> int:
        if self.proc.stdin:
            self.proc.stdin.close()
        status = self.proc.wait(15)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        return status

    def close(self) -> None:
        """End the client whatever state the test left it in (kill it if it still runs)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()


def test_revocation_takes_effect_inside_an_open_session(server: Server) -> None:
    session = Interactive(server, "revokee")
    try:
        session.send("test-mode on")
        assert "test_mode: yes" in session.until("test_mode: yes")
        # The user manager demotes revokee while the session is open.
        assert server.ssh("admin", "user roles revokee viewer").returncode == 0
        mark = server.mark()
        session.send("test-mode off")
        assert "denied: test_mode_toggle" in session.until("denied")
        session.send("show time")
        assert "meter_time" in session.until("meter_time")
        # Removing the user altogether ends the session.
        assert server.ssh("admin", "user remove revokee").returncode == 0
        session.proc.wait(15)
    finally:
        session.close()
    records = [r for r in server.since(mark) if r.principal == "revokee"]
    assert any(r.event is EventType.PERMISSION_DENIED and r.permission == "test_mode_toggle" for r in records)
    assert any(
        r.event is EventType.LOGOUT_MANUAL and r.detail.get("reason") == "user removed" for r in records
    )
    # Put revokee back for other tests.
    server.call(_restore(server))


async def _restore(server: Server) -> None:
    server.guard.install_policy(compile_policy(load_policy(policy_data(server.key_lines, server.hashed))))


def test_an_idle_session_is_closed_and_recorded(server: Server) -> None:
    session = Interactive(server, "viewer1")
    try:
        session.send("whoami")
        assert "user: viewer1" in session.until("user: viewer1")
        mark = server.mark()
        server.clock[0] += 601  # the policy's idle timeout is 600 s
        server.call(server.guard.sweep())
        # The guard's close hangs the channel up: ssh ends without its stdin closing.
        session.proc.wait(15)
    finally:
        session.close()
    records = [r for r in server.since(mark) if r.principal == "viewer1"]
    assert any(r.event is EventType.LOGOUT_TIMEOUT for r in records)
