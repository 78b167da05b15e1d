"""Stateful rules roll back with the action; every session path applies the role limit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from meterd.guard import Guard, Permit, Session
from meterd.metrics.registry import MeterdMetrics
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, DenyReason, Outcome
from meterd.seclog import EventType, Query, SecurityLog, read_records
from meterd.seclog.events import PrincipalKind

DOC: dict[str, Any] = {
    "users": {
        "admin": {"roles": ["rbacmnt"]},
        "op": {"roles": ["operator"]},
        "op2": {"roles": ["operator"]},
        "inst": {"roles": ["installer"]},
        "inst2": {"roles": ["installer"]},
    },
    "applications": {"scada": {"roles": ["viewer", "engineer"]}},
}
DEMAND = "/meter/demand"


@contextlib.asynccontextmanager
async def _guard(tmp_path: Path, doc: dict[str, Any]) -> AsyncIterator[Guard]:
    SecurityLog.init(tmp_path / "log")
    with SecurityLog.open(tmp_path / "log") as seclog:
        yield Guard(compile_policy(load_policy(doc)), seclog)


async def _login(guard: Guard, name: str, channel: Channel = Channel.SSH) -> Session:
    session = await guard.open_session(name, channel, "127.0.0.1", (Permission.TERMINAL_ACCESS,))
    assert isinstance(session, Session)
    return session


def test_a_reset_the_meter_rejected_does_not_block_the_next(tmp_path: Path) -> None:
    async def main() -> None:
        async with _guard(tmp_path, DOC) as guard:
            op = await _login(guard, "op")
            first = await guard.authorize(op, Permission.PEAK_DEMAND_RESET, DEMAND)
            assert first.allowed
            await first.failed({"error": "meter refused"}, event=EventType.DEMAND_RESET)
            second = await guard.authorize(op, Permission.PEAK_DEMAND_RESET, DEMAND)
            assert second.allowed
            await second.done()
            # A reset that did happen still starts the lockout period.
            third = await guard.authorize(op, Permission.PEAK_DEMAND_RESET, DEMAND)
            assert third.reason is DenyReason.LOCKOUT_PERIOD

    asyncio.run(main())
    failed = read_records(tmp_path / "log", Query(events=frozenset({EventType.DEMAND_RESET})))
    assert [r.outcome for r in failed] == [Outcome.ALLOW, Outcome.ERROR, Outcome.ALLOW]


def test_a_permit_completes_once(tmp_path: Path) -> None:
    """A permit's first completion counts: a later failure neither releases nor records."""

    async def main() -> None:
        async with _guard(tmp_path, DOC) as guard:
            op = await _login(guard, "op")
            first = await guard.authorize(op, Permission.PEAK_DEMAND_RESET, DEMAND)
            assert isinstance(first, Permit)
            assert first.allowed
            await first.done()
            await first.failed({"error": "too late"})
            again = await guard.authorize(op, Permission.PEAK_DEMAND_RESET, DEMAND)
            assert again.reason is DenyReason.LOCKOUT_PERIOD
            await again.failed({"error": "nothing to complete"})  # a refusal has nothing to give back
            assert guard.demand_window.last_reset is not None

    asyncio.run(main())
    resets = read_records(tmp_path / "log", Query(events=frozenset({EventType.DEMAND_RESET})))
    assert [r.outcome for r in resets] == [Outcome.ALLOW]


def test_a_reset_the_log_could_not_record_spends_no_lockout_period(tmp_path: Path) -> None:
    async def main() -> None:
        async with _guard(tmp_path, DOC) as guard:
            op = await _login(guard, "op")
            guard.seclog._writer._failure = RuntimeError("disk gone")  # the log fails
            refused = await guard.authorize(op, Permission.PEAK_DEMAND_RESET, DEMAND)
            assert refused.reason is DenyReason.LOG_UNAVAILABLE
            assert guard.demand_window.last_reset is None

    asyncio.run(main())


def test_a_reset_rejected_by_dual_control_spends_no_lockout_period(tmp_path: Path) -> None:
    doc = {**DOC, "constraints": {"dual_control": ["peak_demand_reset"]}}

    async def main() -> None:
        async with _guard(tmp_path, doc) as guard:
            op, op2 = await _login(guard, "op"), await _login(guard, "op2")
            waiting = asyncio.create_task(guard.authorize(op, Permission.PEAK_DEMAND_RESET, DEMAND))
            await asyncio.sleep(0.1)
            (pending,) = guard.approvable(op2)
            assert guard.approvable(op) == []  # nobody approves their own request
            assert (await guard.approve(op2, pending.id, approve=False)).allowed
            rejected = await waiting
            assert rejected.reason is DenyReason.DUAL_CONTROL
            assert guard.demand_window.last_reset is None
            again = asyncio.create_task(guard.authorize(op, Permission.PEAK_DEMAND_RESET, DEMAND))
            await asyncio.sleep(0.1)
            (pending,) = guard.approvable(op2)
            await guard.approve(op2, pending.id)
            assert (await again).allowed

    asyncio.run(main())


def test_approving_a_missing_request_is_no_recorded_denial(tmp_path: Path) -> None:
    async def main() -> None:
        async with _guard(tmp_path, DOC) as guard:
            inst = await _login(guard, "inst")
            answer = await guard.approve(inst, 999)
            assert answer.reason is DenyReason.BAD_REQUEST
            assert answer.detail == "no pending request 999"

    asyncio.run(main())
    assert read_records(tmp_path / "log", Query(events=frozenset({EventType.PERMISSION_DENIED}))) == []


def test_listings_and_any_of_choices_apply_the_role_limit(tmp_path: Path) -> None:
    async def main() -> None:
        async with _guard(tmp_path, DOC) as guard:
            scada = await guard.open_session("scada", Channel.MODBUS, "127.0.0.1", (Permission.FS_READ_ONLY,))
            assert isinstance(scada, Session)
            assert Permission.FS_READ_WRITE in guard.permitted(scada, "/files/data")
            scada.role_limit = ("viewer",)
            listed = guard.permitted(scada, "/files/data")
            assert Permission.FS_READ_WRITE not in listed
            assert Permission.FS_READ_ONLY in listed
            # fs_read_write first: the role limit steers the choice to what the viewer role grants.
            chosen = await guard.authorize_any(
                scada, (Permission.FS_READ_WRITE, Permission.FS_READ_ONLY), "/files/data"
            )
            assert chosen.allowed
            assert chosen.request.permission is Permission.FS_READ_ONLY
            scada.role_limit = ()
            assert guard.permitted(scada) == frozenset()

    asyncio.run(main())


def test_records_by_meterd_say_system_and_unknown_names_say_unknown(tmp_path: Path) -> None:
    async def main() -> None:
        async with _guard(tmp_path, DOC) as guard:
            await guard.record(EventType.REBOOT, "meterd", Outcome.ALLOW, channel=Channel.LOCAL)
            await guard.record(EventType.ACCOUNT_LOCKED, "mallory", Outcome.DENY, channel=Channel.SSH)
            await guard.record(EventType.LOGOUT_MANUAL, "scada", Outcome.ALLOW, channel=Channel.MODBUS)

    asyncio.run(main())
    kinds = {r.principal: r.principal_kind for r in read_records(tmp_path / "log") if r.seq > 1}
    assert kinds == {
        "meterd": PrincipalKind.SYSTEM,
        "mallory": PrincipalKind.UNKNOWN,
        "scada": PrincipalKind.APPLICATION,
    }


def test_an_approver_is_held_to_the_role_limit_of_the_session(tmp_path: Path) -> None:
    doc = {**DOC, "constraints": {"dual_control": ["master_reset"]}}

    async def main() -> None:
        async with _guard(tmp_path, doc) as guard:
            inst, inst2 = await _login(guard, "inst"), await _login(guard, "inst2")
            waiting = asyncio.create_task(guard.authorize(inst, Permission.MASTER_RESET, "/meter"))
            await asyncio.sleep(0.1)
            inst2.role_limit = ("viewer",)  # a role inst2 does not hold: the session may use nothing
            assert guard.approvable(inst2) == []
            (pending,) = guard.dual_control.pending()
            refused = await guard.approve(inst2, pending.id)
            assert refused.reason is DenyReason.ROLE_LIMIT
            inst2.role_limit = None
            assert guard.approvable(inst2) == [pending]
            assert (await guard.approve(inst2, pending.id)).allowed
            assert (await waiting).allowed

    asyncio.run(main())


def test_the_policy_metric_follows_the_store_version_in_force(tmp_path: Path) -> None:
    metrics = MeterdMetrics()
    SecurityLog.init(tmp_path / "log")
    with SecurityLog.open(tmp_path / "log") as seclog:
        compiled = compile_policy(load_policy({**DOC, "policy": {"version": 40}}))
        guard = Guard(compiled, seclog, observer=metrics, policy_version=3)
        assert metrics.registry.get_sample_value("meterd_policy_version") == 3
        assert metrics.registry.get_sample_value("meterd_policy_file_version") == 40
        guard.install_policy(compile_policy(load_policy({**DOC, "policy": {"version": 41}})), 4)  # a push
        assert metrics.registry.get_sample_value("meterd_policy_version") == 4
        assert metrics.registry.get_sample_value("meterd_policy_file_version") == 41
        guard.install_policy(compiled, 5)  # a rollback is a new store version with old content
        assert metrics.registry.get_sample_value("meterd_policy_version") == 5
        assert metrics.registry.get_sample_value("meterd_policy_file_version") == 40
        assert metrics.registry.get_sample_value("meterd_policy_loads_total", {"result": "ok"}) == 3


def test_a_request_cancelled_while_its_wait_is_recorded_leaves_no_pending_approval(tmp_path: Path) -> None:
    """The wait is opened, then recorded: a cancel during that record must still release it."""
    doc = {**DOC, "constraints": {"dual_control": ["peak_demand_reset"]}}

    async def main() -> None:
        async with _guard(tmp_path, doc) as guard:
            op, op2 = await _login(guard, "op"), await _login(guard, "op2")
            told: list[int] = []
            waiting = asyncio.create_task(
                guard.authorize(
                    op,
                    Permission.PEAK_DEMAND_RESET,
                    DEMAND,
                    on_pending=lambda pending: told.append(pending.id),
                )
            )
            # The loop turn that opens the wait also starts its "awaiting_approval" record,
            # which goes to the log's writer thread: the task is suspended inside it now.
            while not guard.dual_control.pending():
                await asyncio.sleep(0)
            (pending,) = guard.dual_control.pending()
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            assert told == []  # the cancel came while the wait was being recorded
            assert guard.dual_control.pending() == []
            assert guard.approvable(op2) == []
            assert (await guard.approve(op2, pending.id)).reason is DenyReason.BAD_REQUEST
            assert guard.demand_window.last_reset is None

    asyncio.run(main())
    # The request still gets its final record: abandoned.
    records = [r for r in read_records(tmp_path / "log") if r.detail.get("dual_control") is not None]
    assert records[-1].event is EventType.PERMISSION_DENIED
    assert records[-1].detail["why"] == "dual control: request abandoned"
