"""The serial console end to end: the daemon's pty, pyserial as the terminal."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from meterd.channels.serial import SerialConfig, SerialListener
from meterd.policy.request import Channel, Outcome
from meterd.seclog import EventType

from ..panel.support import PASSWORD, Env, environment
from .client import Line, eventually, running

Scenario = Callable[[Env, SerialListener, Line], Awaitable[None]]


def play(tmp_path: Path, scenario: Scenario, config: SerialConfig | None = None, **settings: int) -> None:
    async def main() -> None:
        with environment(tmp_path, **settings) as env:
            async with running(env, config) as listener:
                line = Line.open(env.runtime.state_dir / "serial-console")
                try:
                    await scenario(env, listener, line)
                finally:
                    line.close()

    asyncio.run(main())


def test_pty_is_created_and_linked(tmp_path: Path) -> None:
    async def scenario(env: Env, listener: SerialListener, line: Line) -> None:
        link = env.runtime.state_dir / "serial-console"
        assert link.is_symlink()
        assert os.readlink(link) == listener.device_path
        assert listener.device_path.startswith("/dev/pts/")
        await line.expect("serial console")

    play(tmp_path, scenario)


def test_login_shell_and_exit(tmp_path: Path) -> None:
    async def scenario(env: Env, listener: SerialListener, line: Line) -> None:
        await line.expect("login: ")
        await line.send("operator\r")
        echoed = await line.expect("Password: ")
        assert b"operator" in echoed  # the name is echoed
        await line.send(PASSWORD + "\r")
        after = await line.expect("meter> ")
        assert PASSWORD.encode() not in after  # the password is not
        assert PASSWORD.encode() not in line.seen
        record = env.last(EventType.LOGIN_SUCCESS, principal="operator")
        assert record.channel is Channel.SERIAL
        assert record.source == f"serial:{listener.device_path}"

        await line.send("whoami\r")
        await line.expect("operator")
        await line.expect("meter> ")
        await line.send("exit\r")
        await line.expect("logged out")
        await line.expect("login: ")
        logout = env.last(EventType.LOGOUT_MANUAL, principal="operator")
        assert logout.detail["reason"] == "exit"
        assert logout.channel is Channel.SERIAL

    play(tmp_path, scenario)


def test_login_refused(tmp_path: Path) -> None:
    async def scenario(env: Env, listener: SerialListener, line: Line) -> None:
        wrong = await line.login("operator", "not the password")
        unknown = await line.login("nobody", "whatever it is")
        assert wrong.endswith(b"Login incorrect. Repeated failures lock the account for a while.\r\n")
        assert wrong.split(b"\r\n")[-2] == unknown.split(b"\r\n")[-2]
        assert env.last(EventType.LOGIN_FAILURE, principal="operator").detail["reason"] == "bad_credentials"
        assert env.last(EventType.LOGIN_FAILURE, principal="nobody").channel is Channel.SERIAL
        # Right password, but no terminal_access.
        refused = await line.login("panelist")
        assert b"Permission denied" in refused
        assert env.last(EventType.LOGIN_FAILURE, principal="panelist").detail["reason"] == "not_permitted"
        denied = env.last(EventType.PERMISSION_DENIED, principal="panelist")
        assert denied.permission == "terminal_access"
        # Something typed at the login prompt that cannot be a name (a password?) never reaches the log.
        await line.login("Secret-Passw0rd!", "x")
        assert not env.records(principal="Secret-Passw0rd!")
        assert env.last(EventType.LOGIN_FAILURE, principal="invalid-name").outcome is Outcome.DENY

    play(tmp_path, scenario)


def test_lockout_is_per_user_and_channel_and_looks_like_any_failure(tmp_path: Path) -> None:
    async def scenario(env: Env, listener: SerialListener, line: Line) -> None:
        answers = [await line.login("operator", f"wrong {i}") for i in range(3)]
        locked = await line.login("operator")  # the right password, but locked now
        assert b"meter> " not in locked
        assert len({a.split(b"\r\n")[-2] for a in [*answers, locked]}) == 1
        assert env.last(EventType.ACCOUNT_LOCKED, principal="operator").channel is Channel.SERIAL
        assert env.last(EventType.LOGIN_FAILURE, principal="operator").detail["reason"] == "locked"
        # Other users on this channel, and this user on other channels, are unaffected.
        assert not env.guard.lockout.locked("operator", Channel.PANEL, env.clock())
        assert b"meter> " in await line.login("engineer")
        # Once the lockout has passed, the right password works again.
        await line.send("exit\r")
        env.clock.now += 901
        assert b"meter> " in await line.login("operator")

    play(tmp_path, scenario)


def test_idle_timeout_logs_out(tmp_path: Path) -> None:
    async def scenario(env: Env, listener: SerialListener, line: Line) -> None:
        assert b"meter> " in await line.login("engineer")
        got = await line.expect("login: ", timeout=5)
        assert got.count(b"idle timeout") == 1
        record = env.last(EventType.LOGOUT_TIMEOUT, principal="engineer")
        assert record.outcome is Outcome.ALLOW
        assert record.channel is Channel.SERIAL
        assert not env.records(EventType.LOGOUT_MANUAL, principal="engineer")

    play(tmp_path, scenario, idle_timeout=1)


def test_guard_ending_the_session_returns_to_the_login_prompt(tmp_path: Path) -> None:
    async def scenario(env: Env, listener: SerialListener, line: Line) -> None:
        assert b"meter> " in await line.login("engineer")
        env.clock.now += 61
        await env.guard.sweep()
        await line.expect("session closed: idle timeout")
        await line.expect("logged out")
        await line.expect("login: ")
        assert env.last(EventType.LOGOUT_TIMEOUT, principal="engineer").channel is Channel.SERIAL

    play(tmp_path, scenario)


GARBAGE = [
    bytes(range(256)),  # every byte, NUL (a break) and DEL included
    b"\x1b[A\x1b[B\x1bOP\x1b[1;5C\x1b]0;title\x07",  # cursor keys, function keys, an OSC
    os.urandom(4096),  # a line-noise burst
    b"A" * 10_000 + b"\r",  # far beyond max_line
    b"\x00" * 500,
]


def test_garbage_and_overlong_lines_are_harmless(tmp_path: Path) -> None:
    async def scenario(env: Env, listener: SerialListener, line: Line) -> None:
        await line.expect("login: ")
        for burst in GARBAGE:
            await line.send(burst)
            with contextlib.suppress(Exception):
                line.port.send_break(0.05)  # type: ignore[union-attr]
        await line.send(b"\x03")  # Ctrl-C: abandon whatever line the noise left
        await line.quiet(0.5)
        await line.send("\r")  # from either prompt, this leads to a fresh login prompt
        assert b"meter> " in await line.login("engineer")
        # An overlong command line is cut at max_line with one bell, and the shell goes on.
        await line.send("show " + "x" * 300 + "\r")
        got = await line.expect("meter> ")
        assert got.count(b"\a") == 1
        assert b"x" * 65 not in got
        await line.send("whoami\r")
        await line.expect("engineer")
        # Backspace editing and CRLF line ends.
        await line.send("whoamx\x7fi\r\n")
        await line.expect("engineer")
        await line.expect("meter> ")
        assert env.last(EventType.LOGIN_SUCCESS, principal="engineer").channel is Channel.SERIAL

    config = SerialConfig(reconnect_interval=0.05, failure_delay=0, max_line=64)
    play(tmp_path, scenario, config)


def test_terminal_closing_and_reopening(tmp_path: Path) -> None:
    async def scenario(env: Env, listener: SerialListener, line: Line) -> None:
        assert b"meter> " in await line.login("engineer")
        line.close()
        await eventually(lambda: env.records(EventType.LOGOUT_MANUAL, principal="engineer"))
        assert env.last(EventType.LOGOUT_MANUAL, principal="engineer").detail["reason"] == "hangup"
        # The next person at the line gets a login prompt, not the previous session.
        again = Line.open(env.runtime.state_dir / "serial-console")
        try:
            got = await again.login("operator")
            assert b"meter> " in got
            assert b"serial console" in again.seen
        finally:
            again.close()
        await eventually(lambda: env.records(EventType.LOGOUT_MANUAL, principal="operator"))

    play(tmp_path, scenario)


def test_stop_ends_the_session_and_removes_the_link(tmp_path: Path) -> None:
    async def main() -> None:
        with environment(tmp_path) as env:
            listener = SerialListener(SerialConfig(reconnect_interval=0.05, failure_delay=0), env.runtime)
            await listener.start()
            line = Line.open(env.runtime.state_dir / "serial-console")
            try:
                assert b"meter> " in await line.login("operator")
                await listener.stop()
            finally:
                line.close()
            assert not (env.runtime.state_dir / "serial-console").exists()
            assert env.last(EventType.LOGOUT_MANUAL, principal="operator").detail["reason"] == "shutdown"

    asyncio.run(main())
