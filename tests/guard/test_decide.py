"""The pure decision step, tested directly: many small cases on one policy, no log, no loop, no clock."""

from __future__ import annotations

from typing import cast

import pytest

from meterd.guard.decide import ENDED, TIMED_OUT, decide, evaluate, within_role_limit
from meterd.guard.sessions import Session
from meterd.policy.compile import CompiledPolicy, compile_policy
from meterd.policy.grants import PrincipalKind
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, DenyReason, Outcome, Request

IDLE = 60
DOC = {
    "scopes": {"paths": ["/files/data/feeder-a"]},
    "users": {
        "admin": {"roles": ["rbacmnt"]},
        "tech": {"roles": ["operator"], "scopes": ["/files/data/feeder-a", "/modbus"]},
    },
    "applications": {"scada": {"roles": ["viewer", "engineer"]}},
    "settings": {"session_idle_timeout": IDLE},
}
NOW = 1000.0


@pytest.fixture(scope="module")
def compiled() -> CompiledPolicy:
    return compile_policy(load_policy(DOC))


def _session(principal: str, channel: Channel = Channel.SSH, **fields: object) -> Session:
    session = Session("0" * 32, principal, PrincipalKind.USER, channel, "127.0.0.1:40000", NOW, NOW)
    for name, value in fields.items():
        setattr(session, name, value)
    return session


def _request(session: Session, permission: Permission, resource: str = "/") -> Request:
    return Request(session.principal, permission, resource, session.channel, session.source)


def _decide(
    compiled: CompiledPolicy, session: Session, permission: Permission, resource: str = "/"
) -> Decision:
    return decide(compiled, session, _request(session, permission, resource), NOW)


def test_a_granted_permission_is_allowed(compiled: CompiledPolicy) -> None:
    decision = _decide(compiled, _session("admin"), Permission.USER_MANAGEMENT, "/meter/users")
    assert decision.allowed
    assert decision.outcome is Outcome.ALLOW


def test_a_permission_no_role_grants_is_refused(compiled: CompiledPolicy) -> None:
    decision = _decide(compiled, _session("admin"), Permission.MASTER_RESET, "/meter")
    assert decision.outcome is Outcome.DENY
    assert decision.reason is DenyReason.NOT_GRANTED


def test_an_unknown_principal_is_refused(compiled: CompiledPolicy) -> None:
    decision = _decide(compiled, _session("mallory"), Permission.FS_READ_ONLY, "/files/data")
    assert not decision.allowed
    assert decision.reason is DenyReason.UNKNOWN_PRINCIPAL


def test_a_scope_narrows_where_a_grant_applies(compiled: CompiledPolicy) -> None:
    tech = _session("tech")
    assert _decide(compiled, tech, Permission.FS_READ_ONLY, "/files/data/feeder-a").allowed
    outside = _decide(compiled, tech, Permission.FS_READ_ONLY, "/files/data")
    assert outside.reason is DenyReason.OUT_OF_SCOPE


def test_a_closed_session_is_refused_whatever_the_policy_says(compiled: CompiledPolicy) -> None:
    decision = _decide(compiled, _session("admin", closed=True), Permission.USER_MANAGEMENT, "/meter/users")
    assert (decision.outcome, decision.reason, decision.detail) == (
        Outcome.DENY,
        DenyReason.SESSION_CLOSED,
        ENDED,
    )


def test_an_idle_session_is_refused_as_timed_out(compiled: CompiledPolicy) -> None:
    idle = _session("admin", last_active=NOW - IDLE - 0.5)
    decision = _decide(compiled, idle, Permission.USER_MANAGEMENT, "/meter/users")
    assert (decision.reason, decision.detail) == (DenyReason.SESSION_CLOSED, TIMED_OUT)


def test_a_session_idle_exactly_the_timeout_is_still_decided(compiled: CompiledPolicy) -> None:
    edge = _session("admin", last_active=NOW - IDLE)
    assert _decide(compiled, edge, Permission.USER_MANAGEMENT, "/meter/users").allowed


def test_deciding_changes_nothing_in_the_session(compiled: CompiledPolicy) -> None:
    idle = _session("admin", last_active=NOW - IDLE - 1)
    before = (idle.closed, idle.last_active, idle.role_limit)
    _decide(compiled, idle, Permission.USER_MANAGEMENT, "/meter/users")
    _decide(compiled, _session("admin"), Permission.USER_MANAGEMENT, "/meter/users")
    assert (idle.closed, idle.last_active, idle.role_limit) == before


def test_the_same_inputs_give_the_same_decision(compiled: CompiledPolicy) -> None:
    session = _session("tech")
    request = _request(session, Permission.FS_READ_ONLY, "/files/data")
    assert decide(compiled, session, request, NOW) == decide(compiled, session, request, NOW)


def test_a_role_limit_narrows_an_allow(compiled: CompiledPolicy) -> None:
    scada = _session("scada", Channel.MODBUS, role_limit=("viewer",))
    assert _decide(compiled, scada, Permission.FS_READ_ONLY, "/modbus/unit/1").allowed
    write = _decide(compiled, scada, Permission.DSS_CONFIG, "/modbus/unit/1")
    assert write.reason is DenyReason.ROLE_LIMIT
    assert "does not grant dss_config" in write.detail


def test_without_a_role_limit_every_role_counts(compiled: CompiledPolicy) -> None:
    scada = _session("scada", Channel.MODBUS)
    assert _decide(compiled, scada, Permission.DSS_CONFIG, "/modbus/unit/1").allowed


def test_the_null_role_is_granted_nothing(compiled: CompiledPolicy) -> None:
    null = _decide(compiled, _session("scada", Channel.MODBUS, role_limit=()), Permission.FS_READ_ONLY)
    assert null.reason is DenyReason.ROLE_LIMIT
    assert "NULL role" in null.detail


def test_a_role_the_principal_does_not_hold_grants_nothing(compiled: CompiledPolicy) -> None:
    foreign = _session("scada", Channel.MODBUS, role_limit=("rbacmnt",))
    decision = _decide(compiled, foreign, Permission.USER_MANAGEMENT, "/meter/users")
    assert not decision.allowed


def test_a_role_limit_never_widens_a_refusal(compiled: CompiledPolicy) -> None:
    refused = Decision(Request("scada", Permission.MASTER_RESET, "/", Channel.MODBUS, ""), Outcome.DENY)
    limited = _session("scada", Channel.MODBUS, role_limit=("engineer",))
    decision = decide(compiled, limited, refused.request, NOW)
    assert not decision.allowed
    assert decision.reason is not DenyReason.ROLE_LIMIT
    assert within_role_limit(compiled.policy, limited, Decision(refused.request, Outcome.ALLOW)).reason is (
        DenyReason.ROLE_LIMIT
    )


class _Broken:
    """A compiled policy whose evaluator fails."""

    def __init__(self, real: CompiledPolicy) -> None:
        self.policy = real.policy

    def decide(self, request: Request) -> Decision:
        raise RuntimeError("table corrupt")


def test_an_evaluator_failure_is_a_refusal(compiled: CompiledPolicy) -> None:
    broken = cast(CompiledPolicy, _Broken(compiled))
    session = _session("admin")
    decision = decide(broken, session, _request(session, Permission.USER_MANAGEMENT), NOW)
    assert (decision.outcome, decision.reason) == (Outcome.ERROR, DenyReason.EVALUATOR_ERROR)
    assert "table corrupt" in decision.detail
    assert evaluate(broken, decision.request) == decision


def test_a_closed_session_is_refused_before_the_evaluator_runs(compiled: CompiledPolicy) -> None:
    broken = cast(CompiledPolicy, _Broken(compiled))
    session = _session("admin", closed=True)
    decision = decide(broken, session, _request(session, Permission.USER_MANAGEMENT), NOW)
    assert decision.reason is DenyReason.SESSION_CLOSED
