"""Dual control across channels: a master reset asked on the panel, approved or rejected at the console."""

from __future__ import annotations

import asyncio
from pathlib import Path

from meterd.policy.request import Channel, Outcome
from meterd.seclog import EventType

from ..panel.client import Client
from ..panel.client import running as panel_running
from ..panel.support import environment
from .client import Line, running


def test_master_reset_from_the_panel_approved_and_rejected_on_the_console(tmp_path: Path) -> None:
    async def main() -> None:
        with environment(tmp_path) as env:
            async with panel_running(env) as panel, running(env):
                client = await Client.connect(panel.path)
                line = Line.open(env.runtime.state_dir / "serial-console")
                try:
                    session = await client.login("installer")
                    assert b"meter> " in await line.login("installer2")

                    await client.send({"op": "action", "session": session, "action": "master_reset"})
                    pending = await client.recv()
                    assert pending["status"] == "pending"
                    await line.send(f"approve {pending['approval']}\r")
                    await line.expect("meter> ")
                    done = await client.recv()
                    assert done["ok"] is True
                    assert done["action"] == "master_reset"
                    reset = env.last(EventType.MASTER_RESET, principal="installer")
                    assert reset.detail["approved_by"] == "installer2"
                    assert reset.channel is Channel.PANEL
                    approval = env.last(EventType.ACCESS_DECISION, principal="installer2")
                    assert approval.channel is Channel.SERIAL
                    assert approval.outcome is Outcome.ALLOW
                    assert approval.detail["approves"] == pending["approval"]

                    await client.send({"op": "action", "session": session, "action": "master_reset"})
                    pending = await client.recv()
                    await line.send(f"reject {pending['approval']}\r")
                    await line.expect("meter> ")
                    refused = await client.recv()
                    assert refused["reason"] == "dual_control"
                    assert "rejected by installer2" in refused["message"]
                    assert (
                        env.last(EventType.PERMISSION_DENIED, principal="installer").permission
                        == "master_reset"
                    )
                    assert len(env.records(EventType.MASTER_RESET)) == 1
                finally:
                    line.close()
                    await client.close()

    asyncio.run(main())
