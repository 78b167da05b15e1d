"""A real guard, security log, simulated meter and policy for channel tests."""

from __future__ import annotations

import dataclasses
import functools
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from meterd.credentials import hash_secret
from meterd.guard import Guard
from meterd.meter.simulation import SimulatedMeter
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.request import Channel, Outcome
from meterd.runtime import Runtime
from meterd.seclog import EventType, LogConfig, Query, Record, SecurityLog, read_records

PASSWORD = "Horse-7-" + secrets.token_urlsafe(12)  # made per run: no credential in the tree
PIN = "4711"
#: name -> roles; every user gets PASSWORD and PIN.
USERS = {
    "viewer": ["viewer"],
    "operator": ["operator"],
    "engineer": ["engineer"],
    "installer": ["installer"],
    "installer2": ["installer"],
    "panelist": ["panel_only"],
}


@functools.cache
def _hashes() -> tuple[str, str]:
    return hash_secret(PASSWORD, log2_n=14), hash_secret(PIN, log2_n=14)


def policy_data(**settings: int) -> dict[str, Any]:
    password, pin = _hashes()
    return {
        "settings": {"login_failure_threshold": 3, "session_idle_timeout": 60, **settings},
        "roles": {"panel_only": {"permissions": ["front_panel_restart"]}},
        "constraints": {
            "dual_control": ["master_reset", "firmware_management"],
            "channel_caps": {
                "panel": {
                    "permissions": [
                        "front_panel_config",
                        "front_panel_restart",
                        "peak_demand_reset",
                        "test_mode_toggle",
                        "master_reset",
                        "password_self_management",
                    ]
                }
            },
        },
        "users": {name: {"roles": roles, "password": password, "pin": pin} for name, roles in USERS.items()},
    }


class FakeClock:
    """A monotonic clock the test moves by hand (idle timeouts, lockouts)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Env:
    runtime: Runtime
    log_dir: Path
    clock: FakeClock

    @property
    def guard(self) -> Guard:
        return self.runtime.guard

    def records(
        self, *events: EventType, principal: str | None = None, channel: Channel | None = None
    ) -> list[Record]:
        query = Query(events=frozenset(events), principals=frozenset({principal} if principal else ()))
        found = read_records(self.log_dir, query)
        return [r for r in found if channel is None or r.channel is channel]

    def last(self, *events: EventType, principal: str | None = None) -> Record:
        found = self.records(*events, principal=principal)
        assert found, f"no {events} record for {principal}"
        return found[-1]


def assert_record(
    record: Record, event: EventType, outcome: Outcome, permission: str = "", principal: str = ""
) -> None:
    assert record.event is event, record
    assert record.outcome is outcome, record
    if permission:
        assert record.permission == permission, record
    if principal:
        assert record.principal == principal, record


@contextmanager
def environment(
    tmp_path: Path,
    dual_control_timeout: int | None = None,
    idle_timeout: int | None = None,
    **settings: int,
) -> Iterator[Env]:
    """Yield a runtime over a fresh log, meter and policy; close the log after."""
    log_dir = tmp_path / "security-log"
    config = LogConfig(append_only_attr=False)
    SecurityLog.init(log_dir, config)
    seclog = SecurityLog.open(log_dir, config)
    policy = load_policy(policy_data(**settings))
    # Timeouts below the policy's minimum keep the timeout tests short; set on the model directly.
    limits = policy.settings
    if dual_control_timeout is not None:
        limits = dataclasses.replace(limits, dual_control_timeout=dual_control_timeout)
    if idle_timeout is not None:
        limits = dataclasses.replace(limits, session_idle_timeout=idle_timeout)
    policy = dataclasses.replace(policy, settings=limits)
    clock = FakeClock()
    guard = Guard(compile_policy(policy), seclog, monotonic=clock)
    state = tmp_path / "state"
    state.mkdir()
    try:
        yield Env(Runtime(guard, SimulatedMeter(state), state), log_dir, clock)
    finally:
        seclog.close()
