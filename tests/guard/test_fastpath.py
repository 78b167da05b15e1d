"""Aggregated allows given again from the session's memory: decided once, counted every time, never stale."""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from meterd.guard import Guard, Session
from meterd.policy.compile import CompiledPolicy, compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, DenyReason, Outcome, Request
from meterd.seclog import EventType, LogUnavailableError, Query, SecurityLog, read_records
from meterd.seclog.syncer import Fault

READ = Permission.FS_READ_ONLY
UNIT = "/modbus/unit/1"
DOC: dict[str, Any] = {
    "users": {"admin": {"roles": ["rbacmnt"]}},
    "applications": {"scada": {"roles": ["viewer", "engineer"]}},
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def _guard(tmp_path: Path, clock: Callable[[], float]) -> AsyncIterator[Guard]:
    SecurityLog.init(tmp_path / "log")
    with SecurityLog.open(tmp_path / "log") as seclog:
        yield Guard(compile_policy(load_policy(DOC)), seclog, monotonic=clock)


async def _scada(guard: Guard) -> Session:
    opened = await guard.open_session("scada", Channel.MODBUS, "127.0.0.1:5", (READ,), UNIT)
    assert isinstance(opened, Session)
    return opened


def _aggregated(tmp_path: Path) -> list[int]:
    records = read_records(tmp_path / "log", Query(events=frozenset({EventType.ACCESS_DECISION})))
    return [int(str(r.detail["aggregated"])) for r in records if "aggregated" in r.detail]


def test_repeated_aggregated_allows_are_decided_once_and_each_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decided: list[Request] = []
    original = CompiledPolicy.decide

    def counting(self: CompiledPolicy, request: Request) -> Decision:
        decided.append(request)
        return original(self, request)

    monkeypatch.setattr(CompiledPolicy, "decide", counting)

    async def main() -> None:
        async with _guard(tmp_path, Clock()) as guard:
            session = await _scada(guard)
            decided.clear()
            for _ in range(50):
                assert (await guard.authorize(session, READ, UNIT, aggregate=True)).allowed
            first = await guard.authorize(session, Permission.FS_READ_ONLY, "/files/data/a.csv")
            for _ in range(20):
                assert (await guard.reauthorize(session, first)).allowed
            assert len(decided) == 3  # the read, the transfer's start, its first next block
            await guard.sweep(final=True)

    asyncio.run(main())
    assert sorted(_aggregated(tmp_path)) == [20, 50]


def test_a_remembered_allow_ends_with_what_it_rests_on(tmp_path: Path) -> None:
    clock = Clock()

    async def main() -> None:
        async with _guard(tmp_path, clock) as guard:
            limited = await _scada(guard)
            assert (await guard.authorize(limited, READ, UNIT, aggregate=True)).allowed
            limited.role_limit = ()  # the certificate's NULL role
            refused = await guard.authorize(limited, READ, UNIT, aggregate=True)
            assert refused.reason is DenyReason.ROLE_LIMIT

            revoked = await _scada(guard)
            assert (await guard.authorize(revoked, READ, UNIT, aggregate=True)).allowed
            guard.install_policy(compile_policy(load_policy({"users": DOC["users"]})))
            assert not (await guard.authorize(revoked, READ, UNIT, aggregate=True)).allowed
            guard.install_policy(compile_policy(load_policy(DOC)))

            idle = await _scada(guard)
            assert (await guard.authorize(idle, READ, UNIT, aggregate=True)).allowed
            clock.now += guard.policy.settings.session_idle_timeout + 1
            timed_out = await guard.authorize(idle, READ, UNIT, aggregate=True)
            assert timed_out.reason is DenyReason.SESSION_CLOSED
            assert idle.closed

            closed = await _scada(guard)
            transfer = await guard.authorize(closed, READ, "/files/data/a.csv")
            assert (await guard.reauthorize(closed, transfer)).allowed
            await guard.close_session(closed)
            assert (await guard.reauthorize(closed, transfer)).reason is DenyReason.SESSION_CLOSED
            await guard.sweep(final=True)

    asyncio.run(main())
    denied = read_records(tmp_path / "log", Query(events=frozenset({EventType.PERMISSION_DENIED})))
    refusals = [r for r in denied if r.outcome is Outcome.DENY and r.permission == READ.value]
    assert len(refusals) >= 3  # role limit, revoked policy, idle session: each recorded


def test_another_sessions_allow_is_not_remembered_for_this_one(tmp_path: Path) -> None:
    async def main() -> None:
        async with _guard(tmp_path, Clock()) as guard:
            mine, other = await _scada(guard), await _scada(guard)
            other_allow = await guard.authorize(other, READ, "/files/data/a.csv")
            relayed = Decision(
                Request("scada", READ, "/files/data/a.csv", Channel.SSH, "10.0.0.9:22"), Outcome.ALLOW
            )
            for allowed in (other_allow, relayed):
                assert (await guard.reauthorize(mine, allowed)).allowed
            assert all(r.decision.request.source == mine.source for r in mine.allows.values())
            assert not mine.allows or all(
                r.decision.request.channel is mine.channel for r in mine.allows.values()
            )

    asyncio.run(main())


def test_a_remembered_allow_ends_when_a_sync_of_the_log_fails(tmp_path: Path) -> None:
    async def main() -> None:
        async with _guard(tmp_path, Clock()) as guard:
            session = await _scada(guard)
            assert guard.authorize_again(session, READ, UNIT) is None  # nothing remembered yet
            assert (await guard.authorize(session, READ, UNIT, aggregate=True)).allowed
            assert guard.authorize_again(session, READ, UNIT) is not None
            guard.seclog._store.syncer.set_fault(Fault.FAIL, errno.EIO)
            # A record the failing sync refuses; the loop it wakes learns the failure.
            with contextlib.suppress(LogUnavailableError):
                await guard.seclog.append_async(EventType.ALARM, principal="meterd", outcome=Outcome.ERROR)
            await asyncio.sleep(0)
            assert guard.seclog.health.failed
            assert guard.authorize_again(session, READ, UNIT) is None
            refused = await guard.authorize(session, READ, UNIT, aggregate=True)
            assert refused.reason is DenyReason.LOG_UNAVAILABLE

    asyncio.run(main())
