"""The Modbus servers ``bench_modbus.py`` compares, each run in a process of its own.

Run: ``python -m benchmarks.modbus_servers KIND`` with KIND one of ``stub``,
``pymodbus``, ``unsafe`` or ``enforced``; the process prints the port it
listens on (127.0.0.1) and serves until its standard input closes.

* ``stub``: the floor, a bare :class:`asyncio.Protocol` that answers function
  03 from a fixed register image and checks nothing;
* ``pymodbus``: pymodbus ``ModbusTcpServer`` with as many registers as
  meterd's map (from address 0, so the same read is valid);
* ``unsafe``: meterd's Modbus listener with the guard bypassed
  (``UnsafeNoEnforcement``: reads never asked of the guard);
* ``enforced``: meterd's Modbus listener as the daemon runs it: every read
  decided by the guard (aggregated into the security log by a sweep every
  second), metrics on, values from the simulated meter.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import tempfile
from pathlib import Path

from meterd.channels.modbus import ModbusConfig, ModbusListener
from meterd.channels.modbus.registers import INDEX
from meterd.channels.modbus.service import ModbusService, Peer
from meterd.guard import Guard, Permit
from meterd.meter.simulation import SimulatedMeter
from meterd.metrics.registry import MeterdMetrics
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, Outcome, Request
from meterd.runtime import Runtime
from meterd.seclog import LogConfig, SecurityLog
from meterd.seclog.events import DetailValue

POLICY = {
    "roles": {"modbus_reader": {"permissions": ["fs_read_only"]}},
    "anonymous": {"roles": ["modbus_reader"], "scopes": ["/modbus"]},
    "constraints": {"channel_caps": {"modbus": {"permissions": ["fs_read_only"]}}},
}
SWEEP_INTERVAL = 1.0
_MBAP = struct.Struct(">HHHB")
_READ = struct.Struct(">BHH")


class Stub(asyncio.Protocol):
    """The floor: answers every request as a read of the fixed register image."""

    image = bytes(2 * 0x10000)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 12:
            transaction, _, length, unit = _MBAP.unpack_from(buffer)
            end = 6 + length
            if len(buffer) < end:
                return
            function, address, count = _READ.unpack_from(buffer, 7)
            del buffer[:end]
            pdu = bytes((function, 2 * count)) + self.image[2 * address : 2 * (address + count)]
            self.transport.write(_MBAP.pack(transaction, 0, len(pdu) + 1, unit) + pdu)


class UnsafeNoEnforcement(ModbusService):
    """Benchmark only: answers without asking the guard, to measure what asking costs."""

    def __init__(self, runtime: Runtime, unit_ids: tuple[int, ...]) -> None:
        super().__init__(runtime, unit_ids)
        allowed = Decision(Request("anonymous", Permission.FS_READ_ONLY), Outcome.ALLOW)
        self._allowed_again = lambda _session, _permission, _resource: allowed  # never asks

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
        return Permit.of(Decision(request, Outcome.ALLOW), None)


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


def _announce(port: int) -> None:
    print(port, flush=True)


async def serve_stub() -> None:
    server = await asyncio.get_running_loop().create_server(Stub, "127.0.0.1", 0)
    _announce(server.sockets[0].getsockname()[1])
    await _until_stdin_closes()
    server.close()


async def serve_pymodbus() -> None:
    from pymodbus.server import ModbusTcpServer  # noqa: PLC0415 - only this server needs it
    from pymodbus.simulator import DataType, SimData, SimDevice  # noqa: PLC0415

    registers = SimData(address=0, count=len(INDEX), values=0, datatype=DataType.REGISTERS)
    server = ModbusTcpServer(SimDevice(id=1, simdata=[registers]), address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    transport = server.transport
    assert transport is not None
    _announce(int(transport.sockets[0].getsockname()[1]))  # type: ignore[attr-defined]
    await _until_stdin_closes()
    await server.shutdown()  # type: ignore[no-untyped-call]


async def serve_meterd(*, enforce: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        config = LogConfig(append_only_attr=False)
        SecurityLog.init(state / "seclog", config)
        with SecurityLog.open(state / "seclog", config) as seclog:
            metrics = MeterdMetrics(seclog=seclog)
            guard = Guard(compile_policy(load_policy(POLICY)), seclog, observer=metrics)
            runtime = Runtime(guard, SimulatedMeter(state / "meter"), state)
            modbus = ModbusConfig(port=0, max_requests_per_second=100_000, max_connections=4)
            listener = ModbusListener(modbus, runtime)
            if not enforce:
                listener.service = UnsafeNoEnforcement(runtime, modbus.unit_ids)
            await listener.start()
            _announce(listener.ports["tcp"])

            async def sweeping() -> None:
                while True:
                    await asyncio.sleep(SWEEP_INTERVAL)
                    await guard.sweep()

            sweeper = asyncio.create_task(sweeping())
            await _until_stdin_closes()
            sweeper.cancel()
            await listener.stop()
            await guard.sweep(final=True)


def main() -> None:
    kind = sys.argv[1]
    # asyncio receives into a new 256 KiB bytes per read.  glibc serves that from mmap
    # (three system calls per read: mmap, mremap, munmap) until a freed mmap'd block
    # raises its threshold; a process that happened to free a larger block earlier
    # (meterd does, while starting) pays none of them.  Every server starts from that
    # state, so none is measured with a handicap (the stub would cost ~25 % more).
    block = bytes(1 << 20)
    del block
    if kind == "stub":
        asyncio.run(serve_stub())
    elif kind == "pymodbus":
        asyncio.run(serve_pymodbus())
    else:
        asyncio.run(serve_meterd(enforce=kind == "enforced"))


if __name__ == "__main__":
    main()
