"""The budget of unauthenticated refusals is per party: a client that reconnects gets no new budget."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meterd.guard import Guard
from meterd.guard.evidence import party
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Outcome
from meterd.seclog import LogConfig, SecurityLog, read_records

DOC = {"users": {"admin": {"roles": ["rbacmnt"]}}}
PER_SOURCE = 3


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("127.0.0.2:50123", "127.0.0.2"),
        ("::1:50123", "::1"),
        ("fe80::2:1:502", "fe80::2:1"),
        ("uid=1000 pid=4242", "uid=1000"),  # a panel client: its user, whatever its process
        ("/dev/ttyS0", "/dev/ttyS0"),
        ("host.example:22", "host.example:22"),
        ("", ""),
    ],
)
def test_party_is_the_address_without_the_port(source: str, expected: str) -> None:
    assert party(source) == expected


def test_reconnecting_client_shares_one_budget_and_one_summary(tmp_path: Path) -> None:
    config = LogConfig(
        append_only_attr=False, unauthenticated_records=PER_SOURCE, unauthenticated_records_total=100
    )
    SecurityLog.init(tmp_path / "log", config)

    async def run() -> int:
        with SecurityLog.open(tmp_path / "log", config) as seclog:
            guard = Guard(compile_policy(load_policy(DOC)), seclog)
            # Ten connections from one address, each on a new port, two refused writes each.
            for port in range(40000, 40010):
                session = guard.anonymous_session(Channel.MODBUS, f"127.0.0.2:{port}")
                for _ in range(2):
                    decision = await guard.authorize(session, Permission.PEAK_DEMAND_RESET, "/modbus/unit/1")
                    assert not decision.allowed
            pending = guard.refusals_to_summarise
            await guard.sweep()
            assert guard.refusals_to_summarise == 0
            return pending

    pending = asyncio.run(run())
    refusals = [
        r for r in read_records(tmp_path / "log") if r.principal == "anonymous" and r.outcome is Outcome.DENY
    ]
    alone = [r for r in refusals if "summarised" not in r.detail]
    summaries = [r for r in refusals if "summarised" in r.detail]
    assert len(alone) == PER_SOURCE
    assert pending == 20 - PER_SOURCE
    assert [(r.source, r.detail["summarised"]) for r in summaries] == [("127.0.0.2", 20 - PER_SOURCE)]
