"""Modbus read throughput and latency: meterd with enforcement against a plain pymodbus server.

Run: ``python benchmarks/bench_modbus.py [--requests N] [--rounds R] [--json] [--check] [--quick]``.
``--quick`` (what ``make test`` runs) is one round of 300 requests per server.

One client (a minimal MBAP client on asyncio streams, the same for every
server, so the client's own cost is equal) reads 10 holding registers over
TCP on 127.0.0.1, one request at a time, from:

* a plain pymodbus ``ModbusTcpServer`` whose device has as many registers
  as meterd's map (from address 0, so the same read is valid), and no
  enforcement (the baseline);
* meterd's Modbus listener with enforcement: every read decided by the guard
  (compiled policy in C, aggregated into the security log), values taken
  from the simulated meter;
* the same listener with ``UnsafeNoEnforcement`` (reads never asked of the
  guard), to isolate what the decision itself costs.

``--check`` exits 1 if enforcement costs 10 % or more of the baseline's rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import struct
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from meterd.channels.modbus import ModbusConfig, ModbusListener
from meterd.channels.modbus.registers import INDEX
from meterd.channels.modbus.service import ModbusService, Peer
from meterd.guard import Guard, Permit
from meterd.meter.simulation import SimulatedMeter
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Outcome, Request
from meterd.runtime import Runtime
from meterd.seclog import LogConfig, SecurityLog
from meterd.seclog.events import DetailValue

ADDRESS, COUNT = 22, 10
WARM_UP = 300
POLICY = {
    "roles": {"modbus_reader": {"permissions": ["fs_read_only"]}},
    "anonymous": {"roles": ["modbus_reader"], "scopes": ["/modbus"]},
    "constraints": {"channel_caps": {"modbus": {"permissions": ["fs_read_only"]}}},
}


class UnsafeNoEnforcement(ModbusService):
    """Benchmark only: answers without asking the guard, to measure what asking costs."""

    async def _authorize(
        self,
        peer: Peer,
        permission: Permission,
        resource: str,
        detail: dict[str, DetailValue],
        *,
        aggregate: bool,
    ) -> Permit:
        request = Request(peer.session.principal, permission, resource, Channel.MODBUS, peer.session.source)
        return Permit(request, Outcome.ALLOW)  # nothing reserved: nothing to complete


async def measure(port: int, requests: int) -> tuple[float, list[float]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    latencies: list[float] = []
    clock = time.perf_counter
    try:
        for i in range(requests + WARM_UP):
            frame = struct.pack(">HHHBBHH", i & 0xFFFF, 0, 6, 1, 3, ADDRESS, COUNT)
            start = clock()
            writer.write(frame)
            header = await reader.readexactly(7)
            body = await reader.readexactly(struct.unpack(">H", header[4:6])[0] - 1)
            if i >= WARM_UP:
                latencies.append(clock() - start)
            if body[0] != 3 or body[1] != 2 * COUNT:
                raise RuntimeError(f"unexpected answer {body.hex()}")
    finally:
        writer.close()
        await writer.wait_closed()
    return len(latencies) / sum(latencies), latencies


@contextlib.asynccontextmanager
async def pymodbus_server() -> AsyncIterator[int]:
    registers = SimData(address=0, count=len(INDEX), values=0, datatype=DataType.REGISTERS)
    server = ModbusTcpServer(SimDevice(id=1, simdata=[registers]), address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    try:
        transport = server.transport
        assert transport is not None
        yield int(transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]


@contextlib.asynccontextmanager
async def meterd_server(state: Path, *, enforce: bool) -> AsyncIterator[int]:
    state.mkdir(parents=True)
    log_dir = state / "seclog"
    config = LogConfig(append_only_attr=False)
    SecurityLog.init(log_dir, config)
    with SecurityLog.open(log_dir, config) as seclog:
        guard = Guard(compile_policy(load_policy(POLICY)), seclog)
        runtime = Runtime(guard, SimulatedMeter(state / "meter"), state)
        modbus = ModbusConfig(port=0, max_requests_per_second=100_000, max_connections=4)
        listener = ModbusListener(modbus, runtime)
        if not enforce:
            listener.service = UnsafeNoEnforcement(runtime, modbus.unit_ids)
        await listener.start()
        try:
            yield listener.ports["tcp"]
        finally:
            await listener.stop()
            await guard.sweep()


def summary(name: str, rate: float, latencies: list[float]) -> dict[str, float | str]:
    ordered = sorted(latencies)
    return {
        "server": name,
        "requests_per_s": round(rate),
        "p50_us": round(statistics.median(ordered) * 1e6, 1),
        "p99_us": round(ordered[int(len(ordered) * 0.99) - 1] * 1e6, 1),
    }


async def run_one(kind: str, state: Path, requests: int) -> list[float]:
    if kind == "pymodbus":
        async with pymodbus_server() as port:
            return (await measure(port, requests))[1]
    async with meterd_server(state, enforce=kind == "enforced") as port:
        return (await measure(port, requests))[1]


async def main_async(requests: int, rounds: int) -> list[dict[str, float | str]]:
    """Run every server ``rounds`` times, rotating the order so warm-up favours none."""
    kinds = ["pymodbus", "enforced", "unsafe"]
    latencies: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for i in range(len(kinds)):
                kind = kinds[(r + i) % len(kinds)]
                latencies[kind] += await run_one(kind, Path(tmp) / f"{kind}-{r}", requests)
    names = {
        "pymodbus": "pymodbus, no enforcement (baseline)",
        "enforced": "meterd, enforcement on",
        "unsafe": "meterd, UnsafeNoEnforcement",
    }
    return [summary(names[k], len(latencies[k]) / sum(latencies[k]), latencies[k]) for k in kinds]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per server per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--quick", action="store_true", help="one short round (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 300, 1
    rows = asyncio.run(main_async(args.requests, args.rounds))
    baseline, enforced, unsafe = (float(r["requests_per_s"]) for r in rows)
    cost_vs_baseline = 1 - enforced / baseline
    cost_of_decision = 1 - enforced / unsafe
    if args.json:
        print(
            json.dumps(
                {"rows": rows, "cost_vs_pymodbus": cost_vs_baseline, "cost_of_decision": cost_of_decision}
            )
        )
    else:
        print(
            f"reading {COUNT} registers, {args.rounds} x {args.requests} requests per server, one at a time"
        )
        print(f"{'server':<40} {'req/s':>8} {'p50 µs':>8} {'p99 µs':>8}")
        for r in rows:
            print(f"{r['server']:<40} {r['requests_per_s']:>8} {r['p50_us']:>8} {r['p99_us']:>8}")
        print(f"enforcement cost against the pymodbus baseline: {cost_vs_baseline:+.1%}")
        extra = float(rows[1]["p50_us"]) - float(rows[2]["p50_us"])
        print(
            f"the guard's decision alone: {cost_of_decision:+.1%} of meterd's rate ({extra:+.1f} µs at p50)"
        )
    return 1 if args.check and cost_vs_baseline >= 0.10 else 0


if __name__ == "__main__":
    raise SystemExit(main())
