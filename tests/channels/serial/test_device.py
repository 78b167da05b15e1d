"""A real device path opened with pyserial: here a pty pair the test owns, behind a symlink
that the test re-points to simulate a USB adapter being pulled and plugged back in."""

from __future__ import annotations

import asyncio
import os
import tty
from pathlib import Path

from meterd.channels.serial import LOADER, SerialConfig
from meterd.configspec import Base
from meterd.errors import ConfigError
from meterd.policy.request import Channel
from meterd.seclog import EventType
from meterd.tomlreader import Reader

from ..panel.support import environment
from .client import Line, eventually, running


class Adapter:
    """A "USB serial adapter": a pty whose slave the daemon opens through a stable symlink."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.line: Line | None = None

    def plug(self) -> Line:
        master, slave = os.openpty()
        tty.setraw(master)
        name = os.ttyname(slave)
        os.close(slave)
        tmp = self.link.with_suffix(".new")
        os.symlink(name, tmp)
        os.replace(tmp, self.link)
        self.line = Line(fd=master)
        return self.line

    def unplug(self) -> None:
        assert self.line is not None
        self.line.close()
        self.link.unlink()


def test_device_vanishing_and_returning(tmp_path: Path) -> None:
    async def main() -> None:
        with environment(tmp_path) as env:
            adapter = Adapter(tmp_path / "ttyUSB0")
            line = adapter.plug()
            config = SerialConfig(
                device=str(adapter.link), baud=9600, parity="even", reconnect_interval=0.05, failure_delay=0
            )
            async with running(env, config) as listener:
                assert listener.device_path == str(adapter.link)
                assert b"meter> " in await line.login("engineer")
                await line.send("whoami\r")
                await line.expect("engineer")
                record = env.last(EventType.LOGIN_SUCCESS, principal="engineer")
                assert record.source == f"serial:{adapter.link}"
                assert record.channel is Channel.SERIAL

                adapter.unplug()
                await eventually(lambda: env.records(EventType.LOGOUT_MANUAL, principal="engineer"))
                assert env.last(EventType.LOGOUT_MANUAL, principal="engineer").detail["reason"] == "hangup"
                await asyncio.sleep(0.3)  # the daemon retries (and backs off) while the device is gone

                line = adapter.plug()
                await line.expect("serial console")
                assert b"meter> " in await line.login("operator")
                line.close()

    asyncio.run(main())


def test_absent_device_does_not_stop_the_daemon(tmp_path: Path) -> None:
    async def main() -> None:
        with environment(tmp_path) as env:
            config = SerialConfig(device=str(tmp_path / "ttyUSB9"), reconnect_interval=0.05)
            async with running(env, config):
                await asyncio.sleep(0.3)
            assert not env.records(EventType.LOGIN_FAILURE)

    asyncio.run(main())


def test_config_is_validated(tmp_path: Path) -> None:
    errors: list[ConfigError] = []
    config = LOADER.load(
        Reader(
            {"device": "/dev/ttyS1", "baud": 9600, "parity": "even", "reconnect_interval": 0.5},
            "serial",
            "meterd.toml",
            errors,
        ),
        {Base.CONFIG: Path("/etc/meterd")},
    )
    assert not errors
    assert config.device == "/dev/ttyS1"
    assert not config.is_pty
    assert config.reconnect_interval == 0.5
    pty = LOADER.load(Reader({}, "serial", "meterd.toml", errors), {Base.CONFIG: Path("/etc/meterd")})
    assert pty.is_pty
    assert pty.link_path(tmp_path) == tmp_path / "serial-console"
    LOADER.load(
        Reader(
            {"baudrate": 9600, "baud": 12345, "parity": "evn", "stopbits": 3, "max_line": 1},
            "serial",
            "meterd.toml",
            errors,
        ),
        {Base.CONFIG: Path()},
    )
    messages = [e.render() for e in errors]
    assert 'meterd.toml: serial.baudrate: unknown key "baudrate"; did you mean "baud"?' in messages
    assert any(m.startswith("meterd.toml: serial.baud: must be one of") for m in messages)
    assert any(m.startswith("meterd.toml: serial.parity: must be one of") for m in messages)
    assert any(m.startswith("meterd.toml: serial.stopbits:") for m in messages)
    assert any(m.startswith("meterd.toml: serial.max_line:") for m in messages)
