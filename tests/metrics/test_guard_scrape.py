"""End to end: a real Guard and security log move the metrics, a real HTTP scrape passes promtool.

The requests carry a user name, a peer address and (for Modbus) a register
number; none of them may appear as a label value, or anywhere in the scrape.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterd.credentials import MIN_LOG2_N, hash_secret
from meterd.guard import Guard, Password, Session
from meterd.metrics import MeterdMetrics
from meterd.policy.compile import CompiledPolicy, compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Outcome
from meterd.seclog import LogConfig, SecurityLog
from tests.metrics.helpers import label_values, promtool_check, sample_value, scrape

USER = "alice"
INTRUDER = "mallory"
ADDRESS = "192.0.2.7"
SOURCE = f"{ADDRESS}:50022"
REGISTER = "40001"
PASSWORD = "Horse-7-" + secrets.token_urlsafe(12)  # made per run: no credential in the tree


@pytest.fixture(scope="module")
def compiled() -> CompiledPolicy:
    return compile_policy(
        load_policy(
            {
                "policy": {"name": "metrics test", "version": 4},
                "settings": {"login_failure_threshold": 2},
                "users": {USER: {"roles": ["viewer"], "password": hash_secret(PASSWORD, log2_n=MIN_LOG2_N)}},
            }
        )
    )


@pytest.fixture
def seclog(tmp_path: Path) -> Iterator[SecurityLog]:
    config = LogConfig(append_only_attr=False)
    SecurityLog.init(tmp_path / "log", config)
    log = SecurityLog.open(tmp_path / "log", config)
    yield log
    log.close()


async def _traffic(guard: Guard, metrics: MeterdMetrics) -> None:
    for _ in range(2):  # the second failure reaches the threshold and locks the account
        assert not await guard.authenticate(Channel.SSH, SOURCE, USER, Password("wrong"))
    session = await guard.open_session(USER, Channel.SERIAL, "/dev/ttyS1", (Permission.TERMINAL_ACCESS,))
    assert isinstance(session, Session)
    assert metrics.registry.get_sample_value("meterd_sessions_active", {"channel": "serial"}) == 1
    assert (await guard.authorize(session, Permission.FS_READ_ONLY, "/files/data")).allowed
    assert not (await guard.authorize(session, Permission.MASTER_RESET, "/meter")).allowed
    refused = await guard.open_session(INTRUDER, Channel.SSH, SOURCE, (Permission.TERMINAL_ACCESS,))
    assert not isinstance(refused, Session)
    await guard.close_session(session)
    # The Modbus channel reports the function, never the register it addressed.
    metrics.modbus_request(3, Outcome.ALLOW)
    metrics.modbus_request(6, Outcome.DENY)


def test_guard_traffic_moves_the_metrics_and_the_scrape_is_clean(
    compiled: CompiledPolicy, seclog: SecurityLog
) -> None:
    first = seclog.head_seq
    metrics = MeterdMetrics(seclog=seclog)  # as the daemon wires it
    metrics.policy_loaded(compiled.policy.version, ok=True)
    guard = Guard(compiled, seclog, observer=metrics)
    asyncio.run(_traffic(guard, metrics))

    body = scrape(metrics)

    def decisions(channel: str, permission: str, outcome: str) -> float:
        return sample_value(
            body, "meterd_decisions_total", channel=channel, permission=permission, outcome=outcome
        )

    assert decisions("serial", "fs_read_only", "allow") == 1
    assert decisions("serial", "master_reset", "deny") == 1
    assert decisions("ssh", "terminal_access", "deny") == 1  # the intruder's refused login
    assert sample_value(body, "meterd_login_failures_total", channel="ssh") == 3
    assert sample_value(body, "meterd_account_lockouts_total", channel="ssh") == 1
    assert sample_value(body, "meterd_sessions_active", channel="serial") == 0
    assert sample_value(body, "meterd_seclog_records_total") == seclog.head_seq - first > 0
    assert sample_value(body, "meterd_policy_version") == 4
    labels = {"function": "read_holding_registers", "outcome": "allow"}
    assert sample_value(body, "meterd_modbus_requests_total", **labels) == 1
    assert sample_value(body, "process_resident_memory_bytes") > 0

    assert promtool_check(body) == ""

    values = label_values(body)
    everything = set().union(*values.values())
    for secret in (USER, INTRUDER, SOURCE, ADDRESS, REGISTER, "/dev/ttyS1"):
        assert secret not in everything
        assert secret.encode() not in body
    assert values["channel"] <= {c.value for c in Channel}
    assert values["permission"] <= {p.value for p in Permission}
    assert values["outcome"] <= {o.value for o in Outcome}
    assert not any(value.isdigit() for value in values["function"])
