"""The guard's cost on top of the C decision, in a tight loop (used by ``bench_decisions.py``).

Measured on one guard over a real security log, the anonymous Modbus session
of the benchmark policy, in CPU time per call (the median of alternating
rounds): the bare C decision (``NativeEvaluator.decide`` on indices),
``CompiledPolicy.decide``, an aggregated allow as a Modbus read asks it
(``Guard.authorize(..., aggregate=True)``), the SFTP per-block re-decision
(``Guard.reauthorize``), and an aggregated request the policy refuses (its
record is counted into a summary: an anonymous refusal).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from meterd.guard import Guard, Session
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Request
from meterd.seclog import LogConfig, SecurityLog

POLICY = {
    "roles": {"modbus_reader": {"permissions": ["fs_read_only"]}},
    "anonymous": {"roles": ["modbus_reader"], "scopes": ["/modbus"]},
    "users": {"tech": {"roles": ["engineer"]}},
    "constraints": {"channel_caps": {"modbus": {"permissions": ["fs_read_only"]}}},
}
UNIT = "/modbus/unit/1"


def _sync_ns(fn: Callable[[], object], calls: int) -> float:
    started = time.process_time_ns()
    for _ in range(calls):
        fn()
    return (time.process_time_ns() - started) / calls


async def _async_ns(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    started = time.process_time_ns()
    for _ in range(calls):
        await fn()
    return (time.process_time_ns() - started) / calls


async def _measure(log_dir: Path, rounds: int, calls: int) -> list[tuple[str, float]]:
    config = LogConfig(append_only_attr=False)
    SecurityLog.init(log_dir, config)
    with SecurityLog.open(log_dir, config) as seclog:
        guard = Guard(compile_policy(load_policy(POLICY)), seclog)
        compiled = guard.compiled
        anonymous = guard.anonymous_session(Channel.MODBUS, "127.0.0.1:502")
        tech = await guard.open_session("tech", Channel.SSH, "127.0.0.1:22", (Permission.FS_READ_ONLY,))
        assert isinstance(tech, Session)
        transfer = await guard.authorize(tech, Permission.FS_READ_ONLY, "/files/data/a.csv")
        request = Request("anonymous", Permission.FS_READ_ONLY, UNIT, Channel.MODBUS)
        index = compiled.principal_index("anonymous")
        assert index is not None
        node, bit, channel = (
            compiled.policy.scopes.resolve(UNIT),
            Permission.FS_READ_ONLY.bit,
            Channel.MODBUS.index,
        )
        evaluator = compiled._evaluator  # the raw native call is the floor

        def c_decide() -> object:
            return evaluator.decide(index, bit, node, channel)

        def policy_decide() -> object:
            return compiled.decide(request)

        def modbus_read() -> Awaitable[object]:
            return guard.authorize(anonymous, Permission.FS_READ_ONLY, UNIT, aggregate=True)

        def sftp_block() -> Awaitable[object]:
            return guard.reauthorize(tech, transfer)

        def refused() -> Awaitable[object]:
            return guard.authorize(anonymous, Permission.FS_READ_ONLY, "/meter", aggregate=True)

        samples: dict[str, list[float]] = {}
        for r in range(rounds):
            figures = [
                ("C decision (NativeEvaluator.decide, indices)", _sync_ns(c_decide, calls)),
                ("CompiledPolicy.decide(Request)", _sync_ns(policy_decide, calls)),
                ("guard: Modbus read, aggregated allow", await _async_ns(modbus_read, calls)),
                ("guard: SFTP next block, reauthorize", await _async_ns(sftp_block, calls)),
                ("guard: anonymous refusal (summarised)", await _async_ns(refused, max(1, calls // 10))),
            ]
            for label, ns in figures if r % 2 == 0 else figures[::-1]:
                samples.setdefault(label, []).append(ns)
        await guard.sweep(final=True)
    return [(label, statistics.median(values)) for label, values in samples.items()]


def print_guard_costs(quick: bool) -> float:
    """Print the guard's per-call costs next to the C decision; return the slower aggregated allow in ns."""
    rounds, calls = (3, 2000) if quick else (9, 50_000)
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(_measure(Path(tmp) / "log", rounds, calls))
    floor = rows[0][1]
    print("the guard in a tight loop (CPU time per call, median of rounds)")
    print(f"{'path':<48}{'ns/call':>12}{'x C':>8}")
    for label, ns in rows:
        print(f"{label:<48}{ns:>12.1f}{ns / floor:>8.1f}")
    worst = max(rows[2][1], rows[3][1])
    print(f"slower aggregated allow: {worst / 1000:.2f} µs (target at most 2 µs)")
    return worst
