"""Connections turned away at accept: counted, and recorded by the guard within its budget."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path

from meterd.channels.modbus import ModbusListener
from meterd.guard import Guard
from meterd.metrics import MeterdMetrics
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.request import Channel
from meterd.runtime import Runtime
from meterd.seclog import EventType, LogConfig, Query, SecurityLog, read_records

from .conftest import Env, policy_data


def test_a_flood_past_the_client_limit_is_counted_and_recorded_within_the_budget(
    env: Env, tmp_path: Path
) -> None:
    # A guard of its own whose budget is small: 3 records per source, 5 in all.
    log_dir = tmp_path / "budgeted"
    config = LogConfig(append_only_attr=False, unauthenticated_records=3, unauthenticated_records_total=5)
    SecurityLog.init(log_dir, config)
    seclog = SecurityLog.open(log_dir, config)
    metrics = MeterdMetrics()
    guard = Guard(compile_policy(load_policy(policy_data(env.pki))), seclog, observer=metrics)
    runtime = Runtime(guard, env.meter, tmp_path / "state")

    async def scenario() -> None:
        listener = ModbusListener(
            dataclasses.replace(env.config(), max_connections=32, max_connections_per_client=2), runtime
        )
        await listener.start()
        try:
            flood = [await asyncio.open_connection("127.0.0.1", listener.ports["tcp"]) for _ in range(20)]
            for _ in range(200):  # the refusals are recorded by tasks of their own
                if guard.refusals_to_summarise >= 18 - 3:
                    break
                await asyncio.sleep(0.02)
            for _, writer in flood:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
        finally:
            await listener.stop()
        assert listener.counters["connections_refused"] == 18

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
        refusals = read_records(log_dir, Query(events=frozenset({EventType.LOGIN_FAILURE})))
        assert len(refusals) == 3  # the address's budget
        assert {(r.principal, r.channel, r.detail["reason"]) for r in refusals} == {
            ("anonymous", Channel.MODBUS, "too_many_connections")
        }
        assert guard.refusals_to_summarise == 15
        sample = metrics.registry.get_sample_value("meterd_connections_refused_total", {"channel": "modbus"})
        assert sample == 18
    finally:
        seclog.close()
