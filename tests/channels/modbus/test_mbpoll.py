"""End-to-end with mbpoll, Debian's Modbus master (plain Modbus TCP only: mbpoll has no TLS)."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from .conftest import Env, serving

MBPOLL = shutil.which("mbpoll")
pytestmark = pytest.mark.skipif(
    MBPOLL is None, reason="mbpoll is not installed (scripts/system-deps.sh installs it)"
)


async def mbpoll(port: int, *args: str) -> tuple[int, str]:
    assert MBPOLL is not None
    process = await asyncio.create_subprocess_exec(
        MBPOLL,
        "-m",
        "tcp",
        "-p",
        str(port),
        "-a",
        "1",
        "-0",
        "-1",
        "-o",
        "2",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 20)
    return process.returncode or 0, out.decode(errors="replace")


def test_mbpoll_reads_measurements_and_is_refused_a_write(env: Env) -> None:
    async def scenario() -> tuple[tuple[int, str], tuple[int, str], tuple[int, str]]:
        async with serving(env) as listener:
            port = listener.ports["tcp"]
            read = await mbpoll(port, "-t", "4:float", "-B", "-r", "22", "-c", "3", "127.0.0.1")
            write = await mbpoll(port, "-t", "4", "-r", "110", "127.0.0.1", "1")
            unmapped = await mbpoll(port, "-t", "4", "-r", "60", "127.0.0.1")
            return read, write, unmapped

    (read_rc, read_out), (write_rc, write_out), (_, unmapped_out) = asyncio.run(scenario())
    assert read_rc == 0, read_out
    voltages = [float(line.split(":")[1]) for line in read_out.splitlines() if line.startswith("[")]
    assert len(voltages) == 3, read_out
    assert all(100 < v < 400 for v in voltages), read_out
    assert write_rc != 0, write_out
    assert "Illegal function" in write_out, write_out
    assert "Illegal data address" in unmapped_out, unmapped_out
    assert env.meter.test_mode() is False
