"""A process that applies two policies in turn, forever, until it is killed.

Used by the crash test: it prints ``ready`` once the log and the policy store
are open, then alternates between two policies through the real
:class:`PolicyManager`, which stores, installs and records each one.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from meterd.daemon.policies import PolicyManager
from meterd.guard import Guard
from meterd.policy.files import read_policy_text
from meterd.policy.request import Channel
from meterd.seclog import SecurityLog
from tests.daemon.helpers import POLICY_A, POLICY_B


async def main(state: Path) -> None:
    manager = PolicyManager(state / "configured.toml", state, demo_accounts=False)
    compiled, _ = manager.initial()
    seclog = SecurityLog.open(state / "security-log")
    guard = Guard(compiled, seclog)
    policies = [read_policy_text(POLICY_A, "a"), read_policy_text(POLICY_B, "b")]
    print("ready", flush=True)
    turn = 0
    while True:
        await manager.apply(guard, policies[turn % 2], by="admin", channel=Channel.SSH, how="push")
        turn += 1


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
