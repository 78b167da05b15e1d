"""A flood of anonymous Modbus refusals against a small security log, end to end.

Several loopback addresses send plain Modbus TCP writes at the allowed rate,
bounded in count and time, enough to fill the log several times over if each
refusal were recorded alone.  Afterwards an operator's panel action, an SSH
command and a Modbus/TCP Security write are still allowed and recorded, the
records from before the flood are still there, the log verifies, every
refused request is accounted for in the log, and the records about
unauthenticated parties hold at most their share of the capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meterd.credentials import hash_secret
from meterd.policy.dump import dump_policy
from meterd.policy.loader import load_policy
from meterd.policy.request import Channel, Outcome
from meterd.seclog import EventType, Record, read_records
from meterd.seclog.classes import unauthenticated_bytes
from meterd.seclog.keys import parse_key
from meterd.seclog.segments import list_segments
from meterd.seclog.verify import verify
from tests.channels.modbus.pki import Pki, make_pki
from tests.channels.panel.client import Client
from tests.channels.ssh.harness import SSH_BASE, make_key
from tests.daemon.conftest import RunningDaemon, free_port, write_config

StartDaemon = Callable[[Path], RunningDaemon]

PIN = "4711"
CAPACITY = 256 * 1024
SEGMENT = 16 * 1024
SHARE = 10  # percent of the capacity records about unauthenticated parties may hold
PER_SOURCE = 3  # refusals recorded one by one per address ...
TOTAL = 40  # ... and over all addresses (more than PER_SOURCE from each), per interval
RATE_LIMIT = 50  # the channel's max_requests_per_second per peer address
FLOOD_SOURCES = [f"127.0.0.{n}" for n in range(2, 10)]
FLOOD_RATE = 25  # requests per second from each source: half the limit
FLOOD_SECONDS = 14
PER_SOURCE_REQUESTS = FLOOD_RATE * FLOOD_SECONDS
PER_CONNECTION = 20  # a scanner reconnects: each source opens a new connection every so many requests
DEMAND_RESET = 100  # the demand-reset control register
CLIENT_TIMEOUT = 30
#: Write single register (function 06) of unit 1: demand reset := 1, which anonymous may not do.
_WRITE = struct.pack(">HHHBBHH", 0, 0, 6, 1, 0x06, DEMAND_RESET, 1)


def policy_text(pki: Pki, operator_key: str) -> str:
    doc: dict[str, Any] = {
        "policy": {"name": "flood test", "version": 1},
        # No lockout between resets: the same action is used before and after the flood.
        "settings": {"demand_reset_lockout": 0},
        "roles": {"modbus_reader": {"permissions": ["fs_read_only"]}},
        "users": {
            "operator": {
                "roles": ["operator"],
                "pin": hash_secret(PIN, log2_n=14),
                "ssh_keys": [operator_key],
            },
            "rbacmnt": {"roles": ["rbacmnt"]},
        },
        "applications": {
            "scada_ops": {"roles": ["operator"], "cert_fingerprints": [pki.clients["operator"].fingerprint]}
        },
        "anonymous": {"roles": ["modbus_reader"], "scopes": ["/modbus"]},
    }
    return dump_policy(load_policy(doc))


def daemon_config(
    tmp_path: Path, pki: Pki, operator_key: str, full_policy: str
) -> tuple[Path, int, int, int]:
    """Write policy and meterd.toml; return the config and the SSH, plain and TLS Modbus ports."""
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text(pki, operator_key))
    ports: set[int] = set()
    while len(ports) < 3:  # each call frees its port, so two calls may agree
        ports.add(free_port())
    ssh_port, plain_port, tls_port = sorted(ports)
    extra = f"""
[security_log]
capacity_bytes = {CAPACITY}
segment_bytes = {SEGMENT}
full_policy = "{full_policy}"
append_only_attr = false
unauthenticated_share = {SHARE}
unauthenticated_records = {PER_SOURCE}
unauthenticated_records_total = {TOTAL}
unauthenticated_interval = 3600  # longer than the test: the budgets do not refill

[panel]
socket = "panel.sock"

[modbus]
listen = "127.0.0.1"
port = {plain_port}
max_requests_per_second = {RATE_LIMIT}

[modbus.tls]
enabled = true
port = {tls_port}
cert = "{pki.server.cert}"
key = "{pki.server.key}"
ca = "{pki.ca}"
"""
    return write_config(tmp_path, policy, ssh_port=ssh_port, extra=extra), ssh_port, plain_port, tls_port


# -- the operator's three channels ------------------------------------------------


async def panel_demand_reset(socket_path: Path) -> dict[str, Any]:
    client = await Client.connect(socket_path)
    try:
        session = await client.login("operator", PIN)
        return await client.action(session, "demand_reset")
    finally:
        await client.close()


def ssh(key: Path, port: int, command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as the operator with the real OpenSSH client."""
    args = ["ssh", *SSH_BASE, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(key)]
    return subprocess.run(
        [*args, "-p", str(port), "operator@127.0.0.1", command],
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )


async def tls_demand_reset(pki: Pki, port: int) -> bytes:
    """Write the demand-reset register over Modbus/TCP Security with the operator certificate.

    Returns:
        The response PDU.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
    issued = pki.clients["operator"]
    context.load_cert_chain(issued.cert, issued.key)
    # A plain asyncio TLS stream, closed and waited for before the loop ends.
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(_WRITE)
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(7), CLIENT_TIMEOUT)
        return await reader.readexactly(struct.unpack(">H", header[4:6])[0] - 1)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 5)


def operator_actions(daemon: RunningDaemon, key: Path, ssh_port: int, pki: Pki, tls_port: int) -> None:
    panel = asyncio.run(panel_demand_reset(daemon.state_dir / "panel.sock"))
    assert panel["ok"], panel
    reset = ssh(key, ssh_port, "demand reset")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    # The write's echo: allowed and done.
    assert asyncio.run(tls_demand_reset(pki, tls_port)) == _WRITE[7:]


def resets_after(records: list[Record], mark: int) -> dict[Channel, Record]:
    """The allowed demand resets after seq ``mark``, by channel (one each expected)."""
    found = [r for r in records if r.seq > mark and r.event is EventType.DEMAND_RESET]
    assert all(r.outcome is Outcome.ALLOW for r in found), found
    by_channel = {r.channel: r for r in found}
    assert len(by_channel) == len(found) == 3, found
    assert by_channel[Channel.PANEL].principal == "operator"
    assert by_channel[Channel.SSH].principal == "operator"
    assert by_channel[Channel.MODBUS].principal == "scada_ops"
    return by_channel


# -- the flood ------------------------------------------------------------------------


async def flood_from(address: str, port: int) -> Counter[str]:
    """Send PER_SOURCE_REQUESTS refused writes from ``address`` at FLOOD_RATE; count the answers."""
    answers: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while sent < PER_SOURCE_REQUESTS:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
        try:
            for _ in range(min(PER_CONNECTION, PER_SOURCE_REQUESTS - sent)):
                await asyncio.sleep(max(0.0, start + sent / FLOOD_RATE - loop.time()))
                writer.write(_WRITE)
                await writer.drain()
                sent += 1
                answer = await asyncio.wait_for(reader.readexactly(9), 10)
                # Exception 01 to function 06: refused by the guard.
                answers["refused" if answer[7:] == b"\x86\x01" else answer[7:].hex()] += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return answers


async def flood(port: int) -> dict[str, Counter[str]]:
    results = await asyncio.gather(*(flood_from(a, port) for a in FLOOD_SOURCES))
    return dict(zip(FLOOD_SOURCES, results, strict=True))


@contextlib.contextmanager
def reading_notifications(daemon: RunningDaemon) -> Iterator[None]:
    """Keep reading the daemon's notify socket, as systemd does.

    The daemon pings its watchdog every second; a socket nobody reads fills up
    after a few pings and the daemon's next ping would wait for room.
    """
    stop = threading.Event()

    def drain() -> None:
        daemon.notify.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                daemon.messages.append(daemon.notify.recv(4096).decode())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield
    finally:
        stop.set()
        reader.join(5)


def address_of(source: str) -> str:
    """``127.0.0.2`` of ``127.0.0.2:41234`` (a record of one refusal) or of itself (a summary)."""
    return source.rpartition(":")[0] or source


# -- the test -----------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
@pytest.mark.parametrize("full_policy", ["drop_exported", "drop_oldest"])
def test_flood_of_refusals_leaves_operators_and_their_evidence(
    tmp_path: Path, start_daemon: StartDaemon, full_policy: str
) -> None:
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    key, public = make_key(tmp_path, "operator_key")
    config, ssh_port, plain_port, tls_port = daemon_config(tmp_path, pki, public, full_policy)
    daemon = start_daemon(config)
    daemon.wait_for("READY=1")
    log_dir = daemon.state_dir / "security-log"
    with reading_notifications(daemon):
        operator_actions(daemon, key, ssh_port, pki, tls_port)
        before = read_records(log_dir)
        resets_after(before, 0)
        mark = before[-1].seq
        started = time.monotonic()
        sent = asyncio.run(flood(plain_port))
        took = time.monotonic() - started
        operator_actions(daemon, key, ssh_port, pki, tls_port)
        status = ssh(key, ssh_port, "show status")
    assert status.returncode == 0, status.stdout + status.stderr
    shown = dict(line.split(": ", 1) for line in status.stdout.splitlines() if ": " in line)
    assert shown["security_log"] == "ok", shown
    assert int(shown["security_log_unauthenticated_percent"]) <= SHARE, shown
    # Every flood request was answered and refused; the flood is several times the log's
    # capacity if every refusal were one ~400-byte record.
    assert all(answers == {"refused": PER_SOURCE_REQUESTS} for answers in sent.values()), (sent, took)
    total = PER_SOURCE_REQUESTS * len(FLOOD_SOURCES)
    assert total * 400 > 4 * CAPACITY
    assert daemon.stop()[0] == 0

    records = read_records(log_dir)
    # The evidence from before the flood is still there, unchanged.
    assert records[: len(before)] == before
    # The operator's actions after the flood were allowed and recorded.
    after = resets_after(records, mark)
    initial = parse_key((daemon.state_dir / "security-log-initial-key").read_text().strip())
    report = verify(log_dir, key=initial)
    assert report.finding is None, report.finding

    # Every refused request is in the log: recorded alone or counted in a summary, or,
    # where even a summary no longer fit in the share, counted in the stop record.
    flood_records = [
        r
        for r in records
        if r.channel is Channel.MODBUS and r.principal == "anonymous" and r.outcome is Outcome.DENY
    ]
    alone: Counter[str] = Counter()
    summarised: Counter[str] = Counter()
    for r in flood_records:
        assert r.event is EventType.PERMISSION_DENIED, r
        address = address_of(r.source)
        assert address in FLOOD_SOURCES, r
        if "summarised" in r.detail:
            summarised[address] += int(r.detail["summarised"] or 0)
        else:
            alone[address] += 1
    stopped = [r for r in records if r.event is EventType.REBOOT and r.detail.get("state") == "stopped"]
    assert len(stopped) == 1, stopped
    unsummarised = int(stopped[0].detail.get("refusals_not_summarised") or 0)
    assert sum(alone.values()) + sum(summarised.values()) + unsummarised == total
    # Summaries are written by the sweep while the flood goes on, not only at the stop.
    first_summary = min(r.seq for r in flood_records if "summarised" in r.detail)
    assert first_summary < min(r.seq for r in after.values())
    # The budgets: one by one at most PER_SOURCE per address and TOTAL over all.
    assert max(alone.values()) <= PER_SOURCE, alone
    assert sum(alone.values()) <= TOTAL, alone
    for address, answers in sent.items():
        assert alone[address] + summarised[address] <= answers["refused"], address

    # Records about unauthenticated parties hold at most their share of the capacity.
    held = sum(unauthenticated_bytes(path.read_bytes()) for _index, path in list_segments(log_dir))
    assert 0 < held <= CAPACITY * SHARE // 100, held
