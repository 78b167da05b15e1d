"""The running unit's sandbox, as systemd and the kernel report it inside the guest."""

from __future__ import annotations

import asyncio
import re

import asyncssh
import pytest

from meterd.workers import WORKER_NICE

from .meter import Meter

pytestmark = pytest.mark.rig

CAP_NET_BIND_SERVICE = 1 << 10


def test_systemd_rates_the_running_unit_at_most_2(meter: Meter) -> None:
    meter.wait_active()
    out = meter.exec(
        "systemd-analyze", "security", "meterd", "--no-pager", timeout=120, check=False
    ).stdout.decode()
    level = re.search(r"Overall exposure level for meterd\.service: (\d+\.\d+)", out)
    assert level is not None, out
    assert float(level.group(1)) <= 2.0, out


def test_the_daemon_runs_as_meterd_with_only_the_listed_capability(meter: Meter) -> None:
    meter.wait_active()
    pid = meter.unit("MainPID")["MainPID"]
    status = dict(
        line.split(":", 1) for line in meter.sh(f"cat /proc/{pid}/status").splitlines() if ":" in line
    )
    uid = meter.sh("id -u meterd").strip()
    assert status["Uid"].split() == [uid] * 4
    for field in ("CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[field], 16) == CAP_NET_BIND_SERVICE, (field, status[field])
    assert status["NoNewPrivs"].strip() == "1"
    # Every open file that is not a socket, pipe or device lies in meterd's three directories.
    files = meter.sh(f"find /proc/{pid}/fd -type l -printf '%l\\n'").split()
    allowed = (
        "/var/lib/meterd",
        "/var/log/meterd",
        "/run/meterd",
        "/dev/",
        "socket:",
        "pipe:",
        "anon_inode:",
    )
    assert [f for f in files if not f.startswith(allowed)] == [], files


def test_the_credential_workers_run_below_the_event_loop(meter: Meter) -> None:
    """A password login's check runs in a worker thread that lowered its own priority."""
    meter.wait_active()
    password = meter.credentials("operator")[0]

    async def login() -> None:
        async with asyncssh.connect(
            "127.0.0.1",
            meter.ssh_port,
            username="operator",
            password=password,
            known_hosts=str(meter.known_hosts()),
            client_keys=None,
            preferred_auth="password",
            connect_timeout=60,
        ) as connection:
            await connection.run("exit", timeout=60)

    asyncio.run(login())
    pid = meter.unit("MainPID")["MainPID"]
    nice = {}
    for line in meter.sh(f"cat /proc/{pid}/task/*/stat").splitlines():
        tid, _, rest = line.partition(" (")
        fields = rest.rsplit(") ", 1)[1].split()
        nice[int(tid)] = int(fields[16])  # stat field 19, counted from field 3 after the name
    assert nice[int(pid)] == 0, nice
    assert WORKER_NICE in nice.values(), nice
