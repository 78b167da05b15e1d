"""Directory login latency: a local user against an LDAP user, and what concurrent LDAP logins cost the rest.

Run: ``python benchmarks/bench_directory.py [--logins N] [--concurrent N] [--json] [--check] [--quick]``;
``--quick`` (what ``make bench-quick`` runs) is 3 logins and 5 concurrent ones.

A real OpenLDAP ``slapd`` on 127.0.0.1 (LDAPS, a CA made at run time; see
``tests/directory/slapd.py``) and the guard as meterd builds it: a local user
logs in with a password (scrypt), an LDAP user through the directory (service
bind, search, user bind, groups, then the offline cache's scrypt).  Measured,
p50/p99 of wall time: the local login, the directory login, and the
directory's own round trips (the backend alone).  Then ``--concurrent``
directory logins at once while the event loop decides a request every 5 ms
(as a Modbus read would be): the p99 of those decisions against idle.
``--check`` exits 1 if a directory login's p50 exceeds twice a local login
plus the directory's own p50, or the decisions' p99 under load exceeds twice
idle (plus 2 ms of timer granularity).  RADIUS is not measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meterd.credentials import hash_secret
from meterd.guard import Guard, Password, Session
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from tests.directory.helpers import DirectoryGuard, directory_settings, ldap_settings, make_directory_guard
from tests.directory.slapd import Slapd, user_dn

LOCAL_PASSWORD = "Local-Bench-Password-7"
SOURCE = "127.0.0.1:3000"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(times: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(times) * 1000, "p99_ms": percentile(times, 0.99) * 1000}


async def decisions(guard: Guard, session: Session, stop: asyncio.Event) -> list[float]:
    """Decide a request every 5 ms until ``stop``; return how late each decision was done."""
    times = []
    while not stop.is_set():
        due = time.perf_counter() + 0.005
        await asyncio.sleep(0.005)
        await guard.authorize(session, Permission.TERMINAL_ACCESS, "/meter", aggregate=True)
        times.append(max(0.0, time.perf_counter() - due))
    return times


def run(logins: int, concurrent: int) -> tuple[dict[str, dict[str, float]], float]:
    with tempfile.TemporaryDirectory(prefix="meterd-bench-directory-") as tmp:
        root = Path(tmp)
        slapd = Slapd.start(root / "slapd")
        try:
            users = [f"bench{i}" for i in range(max(concurrent, 1))]
            passwords = {u: slapd.add_user(u) for u in users}
            slapd.add_group("Operators", tuple(user_dn(u) for u in users))
            doc = {
                "policy": {"name": "bench", "version": 1},
                "groups": {"operators": {"roles": ["operator"], "directory_group": "Operators"}},
                "users": {"local": {"roles": ["operator"], "password": hash_secret(LOCAL_PASSWORD)}},
            }
            settings = directory_settings(ldap_settings(slapd), login_timeout=10.0, workers=4)
            rig = make_directory_guard(root, settings, doc)
            return asyncio.run(_measure(rig, passwords, logins, concurrent))
        finally:
            slapd.stop()


async def _measure(
    rig: DirectoryGuard, passwords: dict[str, str], logins: int, concurrent: int
) -> tuple[dict[str, dict[str, float]], float]:
    guard, gate = rig.guard, rig.gate
    first = next(iter(passwords))

    async def timed(name: str, secret: str) -> float:
        start = time.perf_counter()
        assert await guard.authenticate(Channel.SSH, SOURCE, name, Password(secret)), name
        return time.perf_counter() - start

    local = [await timed("local", LOCAL_PASSWORD) for _ in range(logins)]
    directory = [await timed(first, passwords[first]) for _ in range(logins)]
    own = []
    for _ in range(logins):
        start = time.perf_counter()
        await gate.run(gate.backend.authenticate, first, passwords[first], time.monotonic() + 10)
        own.append(time.perf_counter() - start)

    opened = await guard.open_session("local", Channel.SSH, SOURCE, (Permission.TERMINAL_ACCESS,))
    assert isinstance(opened, Session)
    stop = asyncio.Event()
    probe = asyncio.create_task(decisions(guard, opened, stop))
    await asyncio.sleep(1.0)
    stop.set()
    idle = await probe
    stop = asyncio.Event()
    probe = asyncio.create_task(decisions(guard, opened, stop))
    started = time.perf_counter()
    await asyncio.gather(*(timed(name, secret) for name, secret in list(passwords.items())[:concurrent]))
    burst = time.perf_counter() - started
    stop.set()
    loaded = await probe
    gate.close()
    figures = {
        "local_login": summary(local),
        "ldap_login": summary(directory),
        "ldap_round_trips": summary(own),
        "decision_delay_idle": summary(idle),
        "decision_delay_loaded": summary(loaded),
    }
    return figures, burst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--quick", action="store_true", help="3 logins, 5 concurrent (a smoke run)")
    args = parser.parse_args()
    logins, concurrent = (3, 5) if args.quick else (args.logins, args.concurrent)
    figures, burst = run(logins, concurrent)
    if args.json:
        print(json.dumps({**figures, "concurrent": concurrent, "concurrent_seconds": burst}, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:<24} p50 {value['p50_ms']:8.1f} ms   p99 {value['p99_ms']:8.1f} ms")
        print(f"{concurrent} concurrent directory logins took {burst:.2f} s")
    if args.check:
        local, ldap, own = figures["local_login"], figures["ldap_login"], figures["ldap_round_trips"]
        if ldap["p50_ms"] > 2 * local["p50_ms"] + own["p50_ms"]:
            print(
                "check: a directory login costs more than 2x a local login plus the directory's round trips"
            )
            return 1
        if figures["decision_delay_loaded"]["p99_ms"] > 2 * figures["decision_delay_idle"]["p99_ms"] + 2.0:
            print("check: concurrent directory logins delay the event loop's decisions")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
