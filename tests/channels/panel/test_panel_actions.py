"""The front panel end to end over a real Unix socket: login, every action, reset rules, dual control."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from meterd.guard import Session
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Outcome
from meterd.seclog import EventType

from .client import Client, running
from .support import Env, assert_record, environment

Scenario = Callable[[Env, Path], Awaitable[None]]


def play(tmp_path: Path, scenario: Scenario, **settings: object) -> None:
    async def main() -> None:
        with environment(tmp_path, **settings) as env:  # type: ignore[arg-type]
            async with running(env) as listener:
                await scenario(env, listener.path)

    asyncio.run(main())


def test_socket_mode_is_0660(tmp_path: Path) -> None:
    async def scenario(env: Env, path: Path) -> None:
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o660

    play(tmp_path, scenario)


def test_login_allowed_and_refused(tmp_path: Path) -> None:
    async def scenario(env: Env, path: Path) -> None:
        client = await Client.connect(path)
        session = await client.login("operator")
        assert len(session) == 32
        assert_record(
            env.last(EventType.LOGIN_SUCCESS, principal="operator"), EventType.LOGIN_SUCCESS, Outcome.ALLOW
        )
        assert env.last(EventType.LOGIN_SUCCESS).channel is Channel.PANEL
        assert env.last(EventType.LOGIN_SUCCESS).source.startswith("uid=")

        wrong = await client.ask({"op": "login", "user": "operator", "pin": "0000"})
        assert wrong["ok"] is False
        assert wrong["error"] == "login_failed"
        assert "0000" not in str(wrong)
        record = env.last(EventType.LOGIN_FAILURE, principal="operator")
        assert record.detail["reason"] == "bad_credentials"
        assert record.detail["method"] == "pin"

        # A viewer's PIN is right, but no panel action is granted to viewers.
        viewer = await client.ask({"op": "login", "user": "viewer", "pin": "4711"})
        assert viewer == {
            "ok": False,
            "error": "denied",
            "message": viewer["message"],
            "permission": "front_panel_config",
            "reason": "not_granted",
        }
        assert env.last(EventType.LOGIN_FAILURE, principal="viewer").detail["reason"] == "not_permitted"
        await client.close()

    play(tmp_path, scenario)


def test_lockout_answer_does_not_reveal_the_user(tmp_path: Path) -> None:
    async def scenario(env: Env, path: Path) -> None:
        client = await Client.connect(path)
        answers = []
        for user in ("operator", "nobody"):
            for _ in range(3):
                answers.append(await client.ask({"op": "login", "user": user, "pin": "0000"}))
        # Locked now: the right PIN fails, with the same answer as for a user who does not exist.
        answers.append(await client.ask({"op": "login", "user": "operator", "pin": "4711"}))
        answers.append(await client.ask({"op": "login", "user": "nobody", "pin": "4711"}))
        assert len({str(a) for a in answers}) == 1
        assert "lock" in answers[0]["message"]
        assert_record(
            env.last(EventType.ACCOUNT_LOCKED, principal="operator"), EventType.ACCOUNT_LOCKED, Outcome.DENY
        )
        assert env.last(EventType.LOGIN_FAILURE, principal="operator").detail["reason"] == "locked"
        # Counted per channel: the same user is not locked on the serial console.
        assert not env.guard.lockout.locked("operator", Channel.SERIAL, env.clock())
        await client.close()

    play(tmp_path, scenario)


# user, action, extra fields, allowed?, event of the record, permission
CASES = [
    ("operator", "demand_reset", {}, True, EventType.DEMAND_RESET, "peak_demand_reset"),
    ("operator", "restart", {}, True, EventType.REBOOT, "front_panel_restart"),
    (
        "operator",
        "config",
        {"settings": {"ct_primary_a": 200}},
        False,
        EventType.PERMISSION_DENIED,
        "front_panel_config",
    ),
    ("operator", "test_mode", {"on": True}, False, EventType.PERMISSION_DENIED, "test_mode_toggle"),
    ("operator", "master_reset", {}, False, EventType.PERMISSION_DENIED, "master_reset"),
    (
        "engineer",
        "config",
        {"settings": {"ct_primary_a": 200}},
        True,
        EventType.CONFIG_CHANGE,
        "front_panel_config",
    ),
    ("engineer", "test_mode", {"on": True}, True, EventType.VALUE_FORCING, "test_mode_toggle"),
    ("engineer", "demand_reset", {}, False, EventType.PERMISSION_DENIED, "peak_demand_reset"),
    ("engineer", "restart", {}, False, EventType.PERMISSION_DENIED, "front_panel_restart"),
    ("installer", "restart", {}, True, EventType.REBOOT, "front_panel_restart"),
    (
        "installer",
        "config",
        {"settings": {"demand_interval_min": 30}},
        True,
        EventType.CONFIG_CHANGE,
        "front_panel_config",
    ),
    ("installer", "test_mode", {"on": False}, False, EventType.PERMISSION_DENIED, "test_mode_toggle"),
    ("installer", "demand_reset", {}, False, EventType.PERMISSION_DENIED, "peak_demand_reset"),
]


@pytest.mark.parametrize(("user", "action", "extra", "allowed", "event", "permission"), CASES)
def test_action_allowed_or_denied(
    tmp_path: Path,
    user: str,
    action: str,
    extra: dict[str, object],
    allowed: bool,
    event: EventType,
    permission: str,
) -> None:
    async def scenario(env: Env, path: Path) -> None:
        client = await Client.connect(path)
        session = await client.login(user)
        answer = await client.action(session, action, **extra)
        record = env.last(event, principal=user)
        assert record.permission == permission
        assert record.channel is Channel.PANEL
        if allowed:
            assert answer["ok"] is True, answer
            assert answer["action"] == action, answer
            assert record.outcome is Outcome.ALLOW
            assert record.detail["action"] == action
        else:
            assert answer == {
                "ok": False,
                "error": "denied",
                "permission": permission,
                "reason": "not_granted",
                "message": answer["message"],
            }
            assert record.outcome is Outcome.DENY
        await client.close()

    play(tmp_path, scenario)


def test_actions_change_the_meter_and_mark_test_mode(tmp_path: Path) -> None:
    async def scenario(env: Env, path: Path) -> None:
        meter = env.runtime.meter
        client = await Client.connect(path)
        session = await client.login("engineer")
        answer = await client.action(
            session, "config", settings={"ct_primary_a": 400, "volts_mode": "3w_delta"}, id=7
        )
        assert answer["id"] == 7
        assert answer["settings"]["ct_primary_a"] == 400
        assert meter.dss_settings().volts_mode == "3w_delta"
        assert env.last(EventType.CONFIG_CHANGE).detail["settings"] == "ct_primary_a=400,volts_mode=3w_delta"

        assert (await client.action(session, "test_mode", on=True))["test_mode"] is True
        assert meter.readings().test_mode is True
        record = env.last(EventType.VALUE_FORCING)
        assert record.detail["set_test_mode"] == "on"
        # While in test mode every panel record says so.
        await client.action(session, "config", settings={"ct_primary_a": 300})
        assert env.last(EventType.CONFIG_CHANGE).detail["test_mode"] is True
        assert (await client.action(session, "test_mode", on=False))["test_mode"] is False
        assert env.last(EventType.VALUE_FORCING).detail["set_test_mode"] == "off"
        assert meter.readings().test_mode is False

        bad = await client.action(session, "config", settings={"ct_primary_a": -5})
        assert bad["ok"] is False
        assert bad["error"] == "invalid"
        failed = env.last(EventType.CONFIG_CHANGE)
        assert failed.outcome is Outcome.ERROR
        assert "ct_primary_a" in str(failed.detail["error"])
        assert meter.dss_settings().ct_primary_a == 300
        await client.close()

    play(tmp_path, scenario)


def test_logout_and_idle_timeout(tmp_path: Path) -> None:
    async def scenario(env: Env, path: Path) -> None:
        client = await Client.connect(path)
        session = await client.login("operator")
        assert (await client.ask({"op": "logout", "session": session}))["logged_out"] == 1
        assert env.last(EventType.LOGOUT_MANUAL, principal="operator").detail["reason"] == "logout"
        stale = await client.action(session, "restart")
        assert stale["error"] == "bad_session"
        assert env.last(EventType.PERMISSION_DENIED).detail["reason"] == "unknown_session"

        # Idle past the policy's timeout (60 s): the guard's sweep ends the session.
        session = await client.login("operator")
        env.clock.now += 61
        await env.guard.sweep()
        assert_record(
            env.last(EventType.LOGOUT_TIMEOUT, principal="operator"), EventType.LOGOUT_TIMEOUT, Outcome.ALLOW
        )
        answer = await client.action(session, "restart")
        assert answer["error"] == "denied"
        assert answer["reason"] == "session_closed"
        assert env.last(EventType.PERMISSION_DENIED, principal="operator").permission == "front_panel_restart"

        # Idle without a sweep: the next request finds it timed out.
        session = await client.login("operator")
        env.clock.now += 61
        answer = await client.action(session, "demand_reset")
        assert answer["reason"] == "session_closed"
        assert len(env.records(EventType.LOGOUT_TIMEOUT, principal="operator")) == 2
        await client.close()

    play(tmp_path, scenario)


def test_demand_reset_lockout_period_across_channels(tmp_path: Path) -> None:
    async def scenario(env: Env, path: Path) -> None:
        client = await Client.connect(path)
        session = await client.login("operator")
        assert (await client.action(session, "demand_reset"))["ok"] is True
        again = await client.action(session, "demand_reset")
        assert again["reason"] == "lockout_period"
        assert "next reset allowed" in again["message"]
        # The same rule holds for a reset asked over SSH inside the period.
        ssh = await env.guard.open_session(
            "operator", Channel.SSH, "192.0.2.7", (Permission.TERMINAL_ACCESS,)
        )
        assert isinstance(ssh, Session)
        decision = await env.guard.authorize(ssh, Permission.PEAK_DEMAND_RESET, "/meter/demand")
        assert not decision.allowed
        assert decision.reason is not None
        assert decision.reason.value == "lockout_period"
        denials = [
            r
            for r in env.records(EventType.PERMISSION_DENIED, principal="operator")
            if r.permission == "peak_demand_reset"
        ]
        assert [r.channel for r in denials] == [Channel.PANEL, Channel.SSH]
        assert len(env.records(EventType.DEMAND_RESET)) == 1
        await client.close()

    play(tmp_path, scenario, demand_reset_lockout=900)


async def _request_master_reset(requester: Client, session: str) -> int:
    await requester.send({"op": "action", "session": session, "action": "master_reset", "id": "mr"})
    pending = await requester.recv()
    assert pending["ok"] is True
    assert pending["status"] == "pending"
    assert pending["id"] == "mr"
    return int(pending["approval"])


def test_dual_control_approved_on_the_panel(tmp_path: Path) -> None:
    async def scenario(env: Env, path: Path) -> None:
        data = env.runtime.meter.file_area / "data"
        env.runtime.meter.record_interval()
        assert any(data.iterdir())
        first, second = await Client.connect(path), await Client.connect(path)
        requester = await first.login("installer")
        approval = await _request_master_reset(first, requester)
        waiting = env.last(EventType.ACCESS_DECISION, principal="installer")
        assert waiting.detail == {"dual_control": approval, "state": "awaiting_approval"}

        # The requester cannot approve their own request; an operator lacks master_reset.
        self_approval = await first.ask({"op": "approve", "session": requester, "approval": approval})
        assert self_approval["reason"] == "dual_control"
        assert (await first.ask({"op": "pending", "session": requester}))["pending"] == []
        operator = await second.login("operator")
        assert (await second.ask({"op": "pending", "session": operator}))["pending"] == []
        refused = await second.ask({"op": "approve", "session": operator, "approval": approval})
        assert refused["error"] == "denied"
        assert refused["permission"] == "master_reset"

        approver = await second.login("installer2")
        missing = await second.ask({"op": "approve", "session": approver, "approval": 999})
        assert missing["error"] == "bad_request"
        assert missing["message"] == "no pending request 999"
        assert "permission" not in missing
        listed = await second.ask({"op": "pending", "session": approver})
        assert [p["approval"] for p in listed["pending"]] == [approval]
        assert listed["pending"][0]["requester"] == "installer"
        answer = await second.ask({"op": "approve", "session": approver, "approval": approval})
        assert answer == {"ok": True, "approval": approval, "approved": True}
        done = await first.recv()
        assert done["ok"] is True
        assert done["action"] == "master_reset"
        assert done["id"] == "mr"
        assert done["removed_files"] >= 1
        assert not any(data.iterdir())

        reset = env.last(EventType.MASTER_RESET, principal="installer")
        assert reset.outcome is Outcome.ALLOW
        assert reset.detail["approved_by"] == "installer2"
        approved = env.last(EventType.ACCESS_DECISION, principal="installer2")
        assert approved.outcome is Outcome.ALLOW
        assert approved.detail["approves"] == approval
        # The security log survives a master reset: everything before it is still there and verifiable.
        assert env.records(EventType.LOG_INIT)
        await first.close()
        await second.close()

    play(tmp_path, scenario)


def test_dual_control_rejected_over_another_channel(tmp_path: Path) -> None:
    async def scenario(env: Env, path: Path) -> None:
        client = await Client.connect(path)
        session = await client.login("installer")
        approval = await _request_master_reset(client, session)
        ssh = await env.guard.open_session(
            "installer2", Channel.SSH, "192.0.2.9", (Permission.TERMINAL_ACCESS,)
        )
        assert isinstance(ssh, Session)
        assert (await env.guard.approve(ssh, approval, approve=False)).allowed
        answer = await client.recv()
        assert answer["error"] == "denied"
        assert answer["reason"] == "dual_control"
        assert "rejected by installer2" in answer["message"]
        record = env.last(EventType.PERMISSION_DENIED, principal="installer")
        assert record.permission == "master_reset"
        assert record.detail["dual_control"] == approval
        assert env.last(EventType.ACCESS_DECISION, principal="installer2").channel is Channel.SSH
        await client.close()

    play(tmp_path, scenario)


def test_dual_control_times_out(tmp_path: Path) -> None:
    async def scenario(env: Env, path: Path) -> None:
        client = await Client.connect(path)
        session = await client.login("installer")
        await _request_master_reset(client, session)
        answer = await client.recv()
        assert answer["reason"] == "dual_control"
        assert "not approved within" in answer["message"]
        record = env.last(EventType.PERMISSION_DENIED, principal="installer")
        assert record.permission == "master_reset"
        assert record.outcome is Outcome.DENY
        assert not env.records(EventType.MASTER_RESET)
        await client.close()

    play(tmp_path, scenario, dual_control_timeout=1)
