"""Modbus server CPU per request and latency: meterd against a bare asyncio stub, pymodbus, itself unenforced.

Run: ``python benchmarks/bench_modbus.py [--requests N] [--rounds R] [--json] [--check] [--quick]``.
``--quick`` (what ``make test`` runs) is three rounds of 300 requests per server.

Each server runs in a process of its own (``benchmarks/modbus_servers.py``):
a bare asyncio ``Protocol`` stub (the floor), pymodbus ``ModbusTcpServer``,
meterd with the guard bypassed, and meterd enforced with metrics on as the
daemon runs it.  One client (a minimal MBAP client on asyncio streams, the
same for every server) reads 10 holding registers over TCP on 127.0.0.1, one
request at a time, in short rounds that alternate between the servers.

Per round and server: the server's CPU time per request, from the kernel's
``/proc/<pid>/schedstat`` (time on CPU, so other load on the machine does not
count), and the client's p50 and p99 latency.  Every figure is reported as
its ratio to the stub's in the same round, and the median of those ratios
over the rounds is what is printed (the absolute figures are medians too).

``--check`` exits 1 unless enforced meterd is within 1.5x of the stub for both
CPU per request and p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADDRESS, COUNT = 22, 10
WARM_UP = 300
KINDS = ("stub", "pymodbus", "unsafe", "enforced")
NAMES = {
    "stub": "bare asyncio Protocol stub (floor)",
    "pymodbus": "pymodbus ModbusTcpServer, no enforcement",
    "unsafe": "meterd, guard bypassed",
    "enforced": "meterd, enforced, metrics on",
}
TARGET = 1.5


@dataclass
class Server:
    kind: str
    process: subprocess.Popen[str]
    port: int

    def cpu_ns(self) -> int:
        """Time the server process (all its threads) has spent on a CPU, from the kernel."""
        total = 0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
        return total


def start(kind: str) -> Server:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.modbus_servers", kind],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip().isdigit():
        process.kill()
        raise RuntimeError(f"{kind} server did not start")
    return Server(kind, process, int(line))


def stop(server: Server) -> None:
    assert server.process.stdin is not None
    server.process.stdin.close()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


class Client:
    """One connection, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.transaction = 0

    async def read(self) -> float:
        self.transaction = (self.transaction + 1) & 0xFFFF
        frame = struct.pack(">HHHBBHH", self.transaction, 0, 6, 1, 3, ADDRESS, COUNT)
        started = time.perf_counter()
        self.writer.write(frame)
        header = await self.reader.readexactly(7)
        body = await self.reader.readexactly(struct.unpack(">H", header[4:6])[0] - 1)
        elapsed = time.perf_counter() - started
        if body[0] != 3 or body[1] != 2 * COUNT:
            raise RuntimeError(f"unexpected answer {body.hex()}")
        return elapsed


@dataclass
class Round:
    cpu_us: float
    p50_us: float
    p99_us: float


async def measure(server: Server, client: Client, requests: int) -> Round:
    before = server.cpu_ns()
    latencies = sorted([await client.read() for _ in range(requests)])
    cpu = server.cpu_ns() - before
    return Round(
        cpu / requests / 1000,
        statistics.median(latencies) * 1e6,
        latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1e6,
    )


async def run(requests: int, rounds: int) -> dict[str, list[Round]]:
    servers = [start(kind) for kind in KINDS]
    try:
        clients = {}
        for server in servers:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            clients[server.kind] = Client(reader, writer)
            for _ in range(WARM_UP):
                await clients[server.kind].read()
        results: dict[str, list[Round]] = {kind: [] for kind in KINDS}
        for r in range(rounds):
            for i in range(len(servers)):
                server = servers[(r + i) % len(servers)]
                results[server.kind].append(await measure(server, clients[server.kind], requests))
        for client in clients.values():
            client.writer.close()
        return results
    finally:
        for server in servers:
            stop(server)


def ratios(results: dict[str, list[Round]], kind: str, field: str) -> float:
    """The median over rounds of ``kind``'s figure divided by the stub's in the same round."""
    return statistics.median(
        float(getattr(mine, field)) / float(getattr(floor, field))
        for mine, floor in zip(results[kind], results["stub"], strict=True)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per server per round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--quick", action="store_true", help="three short rounds (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 300, 3
    results = asyncio.run(run(args.requests, args.rounds))
    rows: list[dict[str, float | str]] = []
    for kind in KINDS:
        rounds = results[kind]
        rows.append(
            {
                "server": NAMES[kind],
                "cpu_us_per_request": round(statistics.median(r.cpu_us for r in rounds), 1),
                "p50_us": round(statistics.median(r.p50_us for r in rounds), 1),
                "p99_us": round(statistics.median(r.p99_us for r in rounds), 1),
                "cpu_x_stub": round(ratios(results, kind, "cpu_us"), 2),
                "p99_x_stub": round(ratios(results, kind, "p99_us"), 2),
            }
        )
    enforced = rows[KINDS.index("enforced")]
    ok = float(enforced["cpu_x_stub"]) <= TARGET and float(enforced["p99_x_stub"]) <= TARGET
    if args.json:
        print(json.dumps({"rows": rows, "within_target": ok}))
    else:
        print(
            f"reading {COUNT} registers, {args.rounds} rounds x {args.requests} requests per server, "
            "one at a time; server CPU from schedstat; ratios: median over rounds of the same round's stub"
        )
        print(f"{'server':<42}{'CPU µs/req':>11}{'x stub':>8}{'p50 µs':>8}{'p99 µs':>8}{'x stub':>8}")
        for r in rows:
            print(
                f"{r['server']:<42}{r['cpu_us_per_request']:>11}{r['cpu_x_stub']:>8}"
                f"{r['p50_us']:>8}{r['p99_us']:>8}{r['p99_x_stub']:>8}"
            )
        print(
            f"enforced meterd against the stub: CPU {enforced['cpu_x_stub']}x, p99 {enforced['p99_x_stub']}x "
            f"(target at most {TARGET}x each)"
        )
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
