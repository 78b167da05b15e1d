"""A real terminal program on the daemon's pty: picocom, driven under tmux like a person would."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from meterd.policy.request import Channel
from meterd.seclog import EventType

from ..panel.support import PASSWORD, environment
from .client import eventually, running

pytestmark = pytest.mark.skipif(
    not (shutil.which("picocom") and shutil.which("tmux")), reason="needs picocom and tmux"
)


class Tmux:
    """One private tmux server running one window."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.name, *args], capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "console")

    async def wait_for(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = await asyncio.to_thread(self.screen)
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on screen:\n{screen}")
            await asyncio.sleep(0.1)

    async def type(self, *keys: str) -> None:
        await asyncio.to_thread(self.run, "send-keys", "-t", "console", *keys)


def test_picocom_login_shell_and_quit(tmp_path: Path) -> None:
    async def main() -> None:
        with environment(tmp_path) as env:
            async with running(env):
                link = env.runtime.state_dir / "serial-console"
                tmux = Tmux(f"meterd-test-{os.getpid()}")
                command = f"picocom -q -b 115200 {link}"
                await asyncio.to_thread(
                    tmux.run, "new-session", "-d", "-s", "console", "-x", "120", "-y", "40", command
                )
                try:
                    await tmux.type("Enter")
                    await tmux.wait_for("login:")
                    await tmux.type("engineer", "Enter")
                    await tmux.wait_for("Password:")
                    await tmux.type(PASSWORD, "Enter")
                    screen = await tmux.wait_for("meter>")
                    assert PASSWORD not in screen
                    await tmux.type("whoami", "Enter")
                    await tmux.wait_for("engineer")
                    record = env.last(EventType.LOGIN_SUCCESS, principal="engineer")
                    assert record.channel is Channel.SERIAL
                    # Quit picocom (C-a C-x): the line hangs up and the session ends with it.
                    await tmux.type("C-a", "C-x")
                    await eventually(lambda: env.records(EventType.LOGOUT_MANUAL, principal="engineer"))
                    assert (
                        env.last(EventType.LOGOUT_MANUAL, principal="engineer").detail["reason"] == "hangup"
                    )
                finally:
                    subprocess.run(
                        ["tmux", "-L", tmux.name, "kill-server"], capture_output=True, timeout=10, check=False
                    )

    asyncio.run(main())
