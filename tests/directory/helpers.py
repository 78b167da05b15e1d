"""A guard with LDAP directory login over a real security log, and a loop-lag probe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from meterd.directory.ldap import LdapBackend, read_password_file
from meterd.directory.offline import OfflineCache
from meterd.directory.settings import DirectorySettings, LdapSettings
from meterd.guard import Guard, GuardObserver
from meterd.guard.directory_gate import DirectoryGate
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.seclog import LogConfig, Record, SecurityLog, read_records
from tests.directory.slapd import GROUPS, PEOPLE, SERVICE_DN, Slapd

T = TypeVar("T")

POLICY: dict[str, Any] = {
    "policy": {"name": "directory tests", "version": 1},
    "constraints": {"separation_of_duties": [["user_management", "security_logs_access"]]},
    "groups": {
        "operators": {"roles": ["operator"], "directory_group": f"cn=Operators,{GROUPS}"},
        "admins": {"roles": ["rbacmnt"], "directory_group": "Admins"},
        "auditors": {"roles": ["secaud"], "directory_group": "Auditors"},
    },
    "users": {"admin": {"roles": ["rbacmnt"]}, "breakglass": {"roles": ["rbacmnt"], "break_glass": True}},
}


def ldap_settings(server: Slapd, servers: tuple[str, ...] | None = None, **changes: Any) -> LdapSettings:
    settings = LdapSettings(
        servers=servers or (server.ldaps_uri,),
        start_tls=False,
        ca=server.ca.cert,
        bind_dn=SERVICE_DN,
        bind_password_file=server.password_file,
        user_base=PEOPLE,
        user_filter="(uid={user})",
        upn_suffix="",
        group_mode="memberof",
        group_base=GROUPS,
        group_depth=3,
        operation_timeout=1.0,
    )
    return replace(settings, **changes)


def directory_settings(ldap: LdapSettings, **changes: Any) -> DirectorySettings:
    settings = DirectorySettings(
        backend="ldap",
        channels=frozenset({Channel.SSH, Channel.SERIAL}),
        login_timeout=2.0,
        session_lifetime=3600.0,
        offline_ttl=3600.0,
        offline_cap=frozenset({Permission.USER_MANAGEMENT, Permission.FIRMWARE_MANAGEMENT}),
        workers=4,
        ldap=ldap,
    )
    return replace(settings, **changes)


@dataclass
class DirectoryGuard:
    guard: Guard
    gate: DirectoryGate
    log_dir: Path

    def records(self) -> list[Record]:
        return read_records(self.log_dir)


def make_directory_guard(
    tmp_path: Path,
    settings: DirectorySettings,
    doc: dict[str, Any] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    observer: GuardObserver | None = None,
    directory_clock: Callable[[], float] = time.monotonic,
) -> DirectoryGuard:
    log_dir = tmp_path / "security-log"
    # No append-only attribute: a test's directory must stay removable.
    config = LogConfig(append_only_attr=False)
    SecurityLog.init(log_dir, config)
    seclog = SecurityLog.open(log_dir, config)
    assert settings.ldap is not None
    backend = LdapBackend(settings.ldap, read_password_file(settings.ldap.bind_password_file))
    offline = OfflineCache(tmp_path / "directory-cache.json", settings.offline_ttl)
    gate = DirectoryGate(settings, backend, offline=offline, monotonic=directory_clock)
    guard = Guard(
        compile_policy(load_policy(doc or POLICY)),
        seclog,
        directory=gate,
        monotonic=monotonic,
        observer=observer,
    )
    return DirectoryGuard(guard, gate, log_dir)


async def with_lag(work: Awaitable[T], tick: float = 0.01) -> tuple[T, float, float]:
    """Run ``work`` while a ticker measures the event loop's worst lag; return (result, seconds, lag)."""
    worst = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(tick)
            worst = max(worst, time.monotonic() - before - tick)

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    try:
        result = await work
    finally:
        took = time.monotonic() - started
        stop.set()
        await task
    return result, took, worst
