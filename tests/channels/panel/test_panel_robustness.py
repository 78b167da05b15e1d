"""Hostile and broken panel clients: malformed input, oversized messages, floods, disconnects."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest

from meterd.channels.panel import LOADER, PanelConfig, PanelListener
from meterd.configspec import Base
from meterd.errors import ChannelError, ConfigError
from meterd.policy.request import Channel, Outcome
from meterd.seclog import EventType
from meterd.tomlreader import Reader

from .client import Client, running
from .support import Env, environment

SESSION = "0" * 32

MALFORMED = [
    (b"{not json", "bad_json"),
    (b"\xff\xfe\x00garbage", "bad_json"),
    (b"[1, 2, 3]", "bad_request"),
    (b'"login"', "bad_request"),
    (b'{"op": "format_disk"}', "unknown_op"),
    (b'{"user": "x"}', "unknown_op"),
    (b'{"op": "login", "user": "operator"}', "bad_request"),
    (b'{"op": "login", "user": "operator", "pin": 4711}', "bad_request"),
    (b'{"op": "login", "user": "operator", "pin": "1", "admin": true}', "bad_request"),
    (b'{"op": "login", "user": "op\\u0000erator", "pin": "1"}', "bad_request"),
    (b'{"op": "action", "session": "' + SESSION.encode() + b'", "action": "self_destruct"}', "bad_request"),
    (b'{"op": "action", "session": "' + SESSION.encode() + b'", "action": "test_mode"}', "bad_request"),
    (
        b'{"op": "action", "session": "' + SESSION.encode() + b'", "action": "test_mode", "on": "yes"}',
        "bad_request",
    ),
    (
        b'{"op": "action", "session": "' + SESSION.encode() + b'", "action": "restart", "on": true}',
        "bad_request",
    ),
    (
        b'{"op": "action", "session": "' + SESSION.encode() + b'", "action": "config", "settings": {}}',
        "bad_request",
    ),
    (
        b'{"op": "action", "session": "'
        + SESSION.encode()
        + b'", "action": "config", "settings": {"ct_primary_a": NaN}}',
        "bad_json",
    ),
    (
        b'{"op": "action", "session": "'
        + SESSION.encode()
        + b'", "action": "config", "settings": {"ct_primary_a": [1]}}',
        "bad_request",
    ),
    (b'{"op": "action", "session": "../../etc", "action": "restart"}', "bad_session"),
    (b'{"op": "approve", "session": "' + SESSION.encode() + b'", "approval": "7"}', "bad_request"),
    (b'{"op": "approve", "session": "' + SESSION.encode() + b'", "approval": true}', "bad_request"),
    (b'{"op": "login", "id": {"x": 1}, "user": "a", "pin": "b"}', "bad_request"),
    (b"[" * 1500 + b"]" * 1500, "bad_json"),
]


def test_malformed_messages_get_an_error_and_nothing_else(tmp_path: Path) -> None:
    async def main() -> None:
        with environment(tmp_path) as env:
            async with running(env) as listener:
                client = await Client.connect(listener.path)
                before = len(env.records())
                for raw, code in MALFORMED:
                    answer = await client.ask_raw(raw)
                    assert answer["ok"] is False, (raw, answer)
                    assert answer["error"] == code, (raw, answer)
                # Nothing reached the guard: no record at all (a well-formed bad token is another matter).
                assert len(env.records()) == before
                unknown = await client.action(SESSION, "restart")
                assert unknown["error"] == "bad_session"
                record = env.last(EventType.PERMISSION_DENIED)
                assert record.detail["reason"] == "unknown_session"
                assert record.channel is Channel.PANEL
                # Blank lines are ignored, CRLF is accepted, and the connection still works.
                await client.send_raw(b"\n\r\n")
                session = await client.login("operator")
                assert (await client.action(session, "restart"))["ok"] is True
                await client.close()

    asyncio.run(main())


async def _still_serves(env: Env, other: Client) -> None:
    session = await other.login("operator")
    answer = await other.action(session, "restart")
    assert answer["ok"] is True
    assert env.last(EventType.REBOOT).outcome is Outcome.ALLOW


def test_oversized_message_closes_only_that_connection(tmp_path: Path) -> None:
    async def main() -> None:
        with environment(tmp_path) as env:
            async with running(env, PanelConfig(max_message=512)) as listener:
                other = await Client.connect(listener.path)
                bad = await Client.connect(listener.path)
                await bad.send_raw(b'{"op":"login","user":"' + b"A" * 600)
                answer = await bad.recv()
                assert answer["error"] == "too_large"
                assert await bad.closed()
                await bad.close()
                # Also a complete line that is too long.
                bad = await Client.connect(listener.path)
                await bad.send_raw(b"x" * 600 + b"\n")
                assert (await bad.recv())["error"] == "too_large"
                assert await bad.closed()
                await bad.close()
                await _still_serves(env, other)
                await other.close()

    asyncio.run(main())


def test_flood_is_cut_off_and_others_unaffected(tmp_path: Path) -> None:
    async def main() -> None:
        with environment(tmp_path) as env:
            async with running(env, PanelConfig(rate=5, burst=10)) as listener:
                other = await Client.connect(listener.path)
                flood = await Client.connect(listener.path)
                line = b'{"op":"pending","session":"' + SESSION.encode() + b'"}\n'
                with contextlib.suppress(ConnectionError, OSError):
                    await flood.send_raw(line * 2000)
                answers = []
                while True:
                    raw = await asyncio.wait_for(flood.reader.readline(), 10)
                    if not raw:
                        break
                    answers.append(raw)
                await flood.close()
                assert b"rate_limited" in answers[-1]
                assert len(answers) <= 11
                # Each well-formed guess was recorded, but no more than the burst.
                assert len(env.records(EventType.PERMISSION_DENIED)) <= 10
                await _still_serves(env, other)
                await other.close()

    asyncio.run(main())


def test_disconnect_mid_message_ends_the_sessions_and_nothing_else(tmp_path: Path) -> None:
    async def main() -> None:
        with environment(tmp_path) as env:
            async with running(env) as listener:
                other = await Client.connect(listener.path)
                gone = await Client.connect(listener.path)
                await gone.login("engineer")
                await gone.send_raw(b'{"op":"action","session":"')
                await gone.close()
                for _ in range(100):
                    if env.records(EventType.LOGOUT_MANUAL, principal="engineer"):
                        break
                    await asyncio.sleep(0.05)
                record = env.last(EventType.LOGOUT_MANUAL, principal="engineer")
                assert record.detail["reason"] == "disconnected"
                assert not env.records(EventType.PERMISSION_DENIED)
                await _still_serves(env, other)
                await other.close()

    asyncio.run(main())


def test_requests_in_flight_and_sessions_are_bounded(tmp_path: Path) -> None:
    async def main() -> None:
        with environment(tmp_path) as env:
            config = PanelConfig(max_clients=2, max_sessions=2)
            async with running(env, config) as listener:
                first, second = await Client.connect(listener.path), await Client.connect(listener.path)
                await first.login("operator")
                await first.login("operator")
                third_session = await first.ask({"op": "login", "user": "operator", "pin": "4711"})
                assert third_session["error"] == "busy"
                third = await Client.connect(listener.path)
                assert (await third.recv())["error"] == "busy"
                assert await third.closed()
                await third.close()
                await _still_serves(env, second)
                # Logout without a token ends every session of the connection.
                assert (await first.ask({"op": "logout"}))["logged_out"] == 2
                await first.close()
                await second.close()

    asyncio.run(main())


def test_stop_ends_sessions_and_removes_the_socket(tmp_path: Path) -> None:
    async def main() -> None:
        with environment(tmp_path) as env:
            listener = PanelListener(PanelConfig(), env.runtime)
            await listener.start()
            client = await Client.connect(listener.path)
            await client.login("operator")
            await listener.stop()
            assert not listener.path.exists()
            assert await client.closed()
            await client.close()
            assert env.last(EventType.LOGOUT_MANUAL, principal="operator").detail["reason"] == "disconnected"

    asyncio.run(main())


def test_stale_socket_is_replaced_and_a_live_or_foreign_one_refused(tmp_path: Path) -> None:
    async def main() -> None:
        with environment(tmp_path) as env:
            path = env.runtime.state_dir / "panel.sock"
            stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stale.bind(str(path))
            stale.close()
            async with running(env) as listener:
                with pytest.raises(ChannelError, match="in use"):
                    await PanelListener(PanelConfig(), env.runtime).start()
                assert listener.path == path
            path.write_text("not a socket")
            with pytest.raises(ChannelError, match="not a socket"):
                await PanelListener(PanelConfig(), env.runtime).start()

    asyncio.run(main())


def test_config_is_validated() -> None:
    errors: list[ConfigError] = []
    config = LOADER.load(
        Reader({"socket": "panel/front.sock", "mode": 0o640, "rate": 50}, "panel", "meterd.toml", errors),
        {Base.CONFIG: Path("/etc/meterd")},
    )
    assert not errors
    assert config.socket_path(Path("/var/lib/meterd")) == Path("/var/lib/meterd/panel/front.sock")
    assert config.mode == 0o640
    assert config.rate == 50
    errors = []
    LOADER.load(
        Reader({"sockett": "x", "mode": 0o666, "max_message": 10**9}, "panel", "meterd.toml", errors),
        {Base.CONFIG: Path()},
    )
    messages = [e.render() for e in errors]
    assert 'meterd.toml: panel.sockett: unknown key "sockett"; did you mean "socket"?' in messages
    assert any("panel.mode: must not grant access to others" in m for m in messages)
    assert any("panel.max_message: must be between" in m for m in messages)
