"""Directory login latency (local, LDAP, RADIUS) and what concurrent directory logins cost Modbus reads.

Run: ``python benchmarks/bench_directory.py [--logins N] [--concurrent N] [--seconds S] [--json] [--check]
[--quick]``; ``--quick`` (what ``make bench-quick`` runs) is 3 logins, 6 concurrent ones and 1 s windows.

The benchmark starts its own servers on 127.0.0.1: a real OpenLDAP ``slapd``
(LDAPS, a CA made at run time; ``tests/directory/slapd.py``) and a real
FreeRADIUS (``tests/directory/freeradius.py``); without them it stops at once
and says what to install.  Two guards as meterd builds them share one event
loop, one per backend, with the same policy.  Measured, p50/p99 of wall time:

* a local user's password login (scrypt), an LDAP user's and a RADIUS user's
  directory login (the whole path: lockout, the backend in a worker thread,
  mapping, the offline cache's scrypt, recompiling the table), and the ratio
  directory/local;
* the servers' own round trips: each backend alone (LDAP: service bind,
  search, user bind, groups; RADIUS: one Access-Request/Accept);
* Modbus reads (10 holding registers) by a real pymodbus client in its own
  process against meterd's Modbus listener on the LDAP guard's loop: idle,
  then while ``--concurrent`` directory logins (half LDAP, half RADIUS) run
  back to back for the whole window.

``--check`` exits 1 if a directory login's p50 exceeds twice a local login's
plus that directory's own round trip (p50), or the Modbus reads' p99 under
load exceeds twice idle (plus 1 ms, below which a 2-core machine's scheduling
noise dominates).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ADDRESS, COUNT, WARM_UP = 22, 10, 50
LOCAL_PASSWORD = "Bench-7-" + secrets.token_urlsafe(12)  # made per run: no credential in the tree
SOURCE = "127.0.0.1:3000"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": percentile(times, 0.99) * 1000,
        "n": float(len(times)),
    }


# -- the Modbus client (its own process) --------------------------------------------------


async def _modbus_client(port: int, seconds: float) -> list[float]:
    from pymodbus.client import AsyncModbusTcpClient  # noqa: PLC0415 - only the client process needs it

    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
    await client.connect()
    latencies: list[float] = []
    try:
        end, i = None, 0
        while end is None or time.perf_counter() < end:
            start = time.perf_counter()
            answer = await client.read_holding_registers(ADDRESS, count=COUNT, device_id=1)
            took = time.perf_counter() - start
            if answer.isError() or len(answer.registers) != COUNT:
                raise RuntimeError(f"unexpected Modbus answer: {answer}")
            i += 1
            if i == WARM_UP:
                end = time.perf_counter() + seconds
            elif i > WARM_UP:
                latencies.append(took)
    finally:
        client.close()
    return latencies


async def modbus_reads(port: int, seconds: float) -> list[float]:
    """Run the pymodbus client in a child process for ``seconds``; return its read latencies."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--modbus-client",
        str(port),
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"the Modbus client failed: {err.decode(errors='replace')[-2000:]}")
    latencies: list[float] = json.loads(out)
    return latencies


# -- the servers and the guards ------------------------------------------------------------


def missing_servers() -> list[str]:
    from tests.directory.freeradius import _BINARY as FREERADIUS  # noqa: PLC0415
    from tests.directory.slapd import find  # noqa: PLC0415

    missing = [] if find("slapd") else ["slapd (Debian: slapd, ldap-utils)"]
    return missing + ([] if FREERADIUS else ["freeradius (Debian: freeradius)"])


def policy(local_hash: str) -> dict[str, Any]:
    return {
        "policy": {"name": "bench", "version": 1},
        "roles": {"modbus_reader": {"permissions": ["fs_read_only"]}},
        "anonymous": {"roles": ["modbus_reader"], "scopes": ["/modbus"]},
        "groups": {"operators": {"roles": ["operator"], "directory_group": "Operators"}},
        "users": {"local": {"roles": ["operator"], "password": local_hash}},
    }


def run(logins: int, concurrent: int, seconds: float) -> dict[str, Any]:
    from meterd.credentials import hash_secret  # noqa: PLC0415
    from tests.directory.freeradius import RadiusUser, freeradius  # noqa: PLC0415
    from tests.directory.slapd import Slapd, user_dn  # noqa: PLC0415

    per_backend = max(1, (concurrent + 1) // 2)
    with tempfile.TemporaryDirectory(prefix="meterd-bench-directory-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        slapd = Slapd.start(root / "slapd")
        stack.callback(slapd.stop)
        ldap_users = {f"bench{i}": "" for i in range(per_backend)}
        ldap_users = {u: slapd.add_user(u) for u in ldap_users}
        slapd.add_group("Operators", tuple(user_dn(u) for u in ldap_users))
        radius_list = [RadiusUser(f"rbench{i}", roles=("operator",)) for i in range(per_backend)]
        radius = stack.enter_context(freeradius(root / "freeradius", radius_list))
        radius_users = {u.name: u.password for u in radius_list}
        doc = policy(hash_secret(LOCAL_PASSWORD))
        return asyncio.run(_measure(root, doc, slapd, radius, ldap_users, radius_users, logins, seconds))


async def _measure(
    root: Path,
    doc: dict[str, Any],
    slapd: Any,
    radius: Any,
    ldap_users: dict[str, str],
    radius_users: dict[str, str],
    logins: int,
    seconds: float,
) -> dict[str, Any]:
    from meterd.channels.modbus import ModbusConfig, ModbusListener  # noqa: PLC0415
    from meterd.directory.offline import OfflineCache  # noqa: PLC0415
    from meterd.directory.radius import RadiusBackend  # noqa: PLC0415
    from meterd.guard import Guard, Password  # noqa: PLC0415
    from meterd.guard.directory_gate import DirectoryGate  # noqa: PLC0415
    from meterd.meter.simulation import SimulatedMeter  # noqa: PLC0415
    from meterd.policy.compile import compile_policy  # noqa: PLC0415
    from meterd.policy.loader import load_policy  # noqa: PLC0415
    from meterd.policy.request import Channel  # noqa: PLC0415
    from meterd.runtime import Runtime  # noqa: PLC0415
    from meterd.seclog import LogConfig, SecurityLog  # noqa: PLC0415
    from tests.directory.helpers import directory_settings, ldap_settings, make_directory_guard  # noqa: PLC0415

    ldap_rig = make_directory_guard(
        root / "ldap", directory_settings(ldap_settings(slapd), login_timeout=10.0, workers=4), doc
    )
    radius_settings = radius.settings(timeout=2.0)
    rad_settings = dataclasses.replace(
        directory_settings(ldap_settings(slapd), workers=4),
        backend="radius",
        ldap=None,
        radius=radius_settings,
    )
    rad_gate = DirectoryGate(
        rad_settings,
        RadiusBackend(radius_settings),
        offline=OfflineCache(root / "radius-cache.json", rad_settings.offline_ttl),
    )
    config = LogConfig(append_only_attr=False)
    SecurityLog.init(root / "radius-log", config)
    rad_log = SecurityLog.open(root / "radius-log", config)
    rad_guard = Guard(compile_policy(load_policy(doc)), rad_log, directory=rad_gate)
    guard, gate = ldap_rig.guard, ldap_rig.gate

    async def timed(on: Guard, name: str, secret: str, source: str = SOURCE) -> float:
        start = time.perf_counter()
        if not await on.authenticate(Channel.SSH, source, name, Password(secret)):
            raise RuntimeError(f"{name} could not log in")
        return time.perf_counter() - start

    async def own(on: DirectoryGate, name: str, secret: str) -> float:
        start = time.perf_counter()
        await on.run(on.backend.authenticate, name, secret, time.monotonic() + 10)
        return time.perf_counter() - start

    ldap_name, ldap_secret = next(iter(ldap_users.items()))
    rad_name, rad_secret = next(iter(radius_users.items()))
    local = [await timed(guard, "local", LOCAL_PASSWORD) for _ in range(logins)]
    ldap = [await timed(guard, ldap_name, ldap_secret) for _ in range(logins)]
    rad = [await timed(rad_guard, rad_name, rad_secret) for _ in range(logins)]
    ldap_own = [await own(gate, ldap_name, ldap_secret) for _ in range(logins)]
    rad_own = [await own(rad_gate, rad_name, rad_secret) for _ in range(logins)]

    state = root / "modbus"
    state.mkdir()
    modbus = ModbusConfig(port=0, max_requests_per_second=100_000, max_connections=4)
    listener = ModbusListener(modbus, Runtime(guard, SimulatedMeter(state / "meter"), state))
    await listener.start()
    try:
        port = listener.ports["tcp"]
        idle = await modbus_reads(port, seconds)
        bursts: list[float] = []
        stop = asyncio.Event()

        async def load() -> None:
            logins_now: list[tuple[Guard, str, str]] = [
                *((guard, u, p) for u, p in ldap_users.items()),
                *((rad_guard, u, p) for u, p in radius_users.items()),
            ]
            while not stop.is_set():
                started = time.perf_counter()
                # Each from its own address, as 20 clients would be (meterd queues password
                # checks per address).
                await asyncio.gather(
                    *(timed(on, u, p, f"127.0.1.{i + 1}:3000") for i, (on, u, p) in enumerate(logins_now))
                )
                bursts.append(time.perf_counter() - started)

        loader = asyncio.create_task(load())
        try:
            loaded = await modbus_reads(port, seconds)
        finally:
            stop.set()
            await loader
    finally:
        await listener.stop()
        await guard.sweep(final=True)
        await rad_guard.sweep(final=True)
        gate.close()
        rad_gate.close()
        rad_log.close()
    figures: dict[str, Any] = {
        "local_login": summary(local),
        "ldap_login": summary(ldap),
        "radius_login": summary(rad),
        "ldap_round_trip": summary(ldap_own),
        "radius_round_trip": summary(rad_own),
        "modbus_read_idle": summary(idle),
        "modbus_read_loaded": summary(loaded),
    }
    figures["ratio_ldap_to_local"] = figures["ldap_login"]["p50_ms"] / figures["local_login"]["p50_ms"]
    figures["ratio_radius_to_local"] = figures["radius_login"]["p50_ms"] / figures["local_login"]["p50_ms"]
    figures["concurrent"] = len(ldap_users) + len(radius_users)
    figures["bursts"] = len(bursts)
    figures["burst_p50_s"] = statistics.median(bursts) if bursts else 0.0
    return figures


def checks(figures: dict[str, Any]) -> list[str]:
    """The ``--check`` findings (empty: every bound holds)."""
    found = []
    local = figures["local_login"]["p50_ms"]
    for backend in ("ldap", "radius"):
        login, trip = figures[f"{backend}_login"]["p50_ms"], figures[f"{backend}_round_trip"]["p50_ms"]
        if login > 2 * local + trip:
            found.append(
                f"a {backend} login ({login:.1f} ms) costs more than 2x a local login plus its round trip"
                f" ({2 * local + trip:.1f} ms)"
            )
    idle, loaded = figures["modbus_read_idle"]["p99_ms"], figures["modbus_read_loaded"]["p99_ms"]
    if loaded > 2 * idle + 1.0:
        found.append(f"Modbus reads' p99 under load ({loaded:.2f} ms) exceeds 2x idle ({idle:.2f} ms) + 1 ms")
    return found


def report(figures: dict[str, Any], write: Callable[[str], None] = print) -> None:
    for key, value in figures.items():
        if isinstance(value, dict):
            p50, p99, n = value["p50_ms"], value["p99_ms"], value["n"]
            write(f"{key:<22} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms   (n={n:.0f})")
    write(
        f"directory/local (p50): ldap {figures['ratio_ldap_to_local']:.2f}x, "
        f"radius {figures['ratio_radius_to_local']:.2f}x"
    )
    write(
        f"Modbus under load: {figures['concurrent']} concurrent directory logins, "
        f"{figures['bursts']} bursts (p50 {figures['burst_p50_s']:.2f} s each)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--logins", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=3.0, help="each Modbus window")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--quick", action="store_true", help="3 logins, 6 concurrent, 1 s windows")
    parser.add_argument("--modbus-client", nargs=2, metavar=("PORT", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.modbus_client:
        port, seconds = args.modbus_client
        print(json.dumps(asyncio.run(_modbus_client(int(port), float(seconds)))))
        return 0
    missing = missing_servers()
    if missing:
        print(f"bench_directory: missing {', '.join(missing)}: run scripts/system-deps.sh", file=sys.stderr)
        return 2
    logins, concurrent, seconds = (3, 6, 1.0) if args.quick else (args.logins, args.concurrent, args.seconds)
    figures = run(logins, concurrent, seconds)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        report(figures)
    found = checks(figures)
    for finding in found:
        print(f"check: {finding}")
    return 1 if args.check and found else 0


if __name__ == "__main__":
    sys.exit(main())
