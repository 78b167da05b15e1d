"""The native evaluator agrees with the pure-Python reference on generated policies."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterd.errors import EvaluatorError
from meterd.policy.compile import compile_policy
from meterd.policy.evaluator import NativeEvaluator
from meterd.policy.loader import load_policy
from meterd.policy.model import User, frozen_map
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Outcome, Request
from meterd.policy.table import Verdict
from tests.policy.reference import reference_verdict
from tests.policy.strategies import SCOPE_POOL, policy_documents, requests_for

SETTINGS = settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(data=st.data(), doc=policy_documents())
def test_native_agrees_with_reference(data: st.DataObject, doc: dict[str, Any]) -> None:
    policy = load_policy(doc)
    compiled = compile_policy(policy)
    requests = data.draw(st.lists(requests_for(doc), min_size=20, max_size=40))
    for principal, permission, resource, channel in requests:
        expected = reference_verdict(policy, principal, permission, resource, channel)
        got = compiled.verdict(principal, permission, resource, channel)
        assert got is expected, (principal, permission, resource, channel)


@settings(max_examples=300, deadline=None)
@given(
    doc=policy_documents(),
    permission=st.sampled_from(list(Permission)),
    channel=st.sampled_from(list(Channel)),
)
def test_unknown_principal_is_denied(doc: dict[str, Any], permission: Permission, channel: Channel) -> None:
    compiled = compile_policy(load_policy(doc))
    decision = compiled.decide(Request("nobody-here", permission, "/", channel))
    assert decision.outcome is Outcome.DENY
    assert compiled.verdict("nobody-here", permission, "/", channel) is Verdict.UNKNOWN_PRINCIPAL


@settings(max_examples=300, deadline=None)
@given(
    doc=policy_documents(),
    permission=st.sampled_from(list(Permission)),
    channel=st.sampled_from(list(Channel)),
)
def test_empty_role_list_denies_everything(
    doc: dict[str, Any], permission: Permission, channel: Channel
) -> None:
    doc["users"]["lonely"] = {"roles": []}
    compiled = compile_policy(load_policy(doc))
    for resource in SCOPE_POOL:
        assert not compiled.verdict("lonely", permission, resource, channel).allowed


@settings(max_examples=400, deadline=None)
@given(
    data=st.data(),
    doc=policy_documents(),
    restriction=st.lists(st.sampled_from(SCOPE_POOL), min_size=1, max_size=2),
)
def test_scope_restriction_never_widens(
    data: st.DataObject, doc: dict[str, Any], restriction: list[str]
) -> None:
    wide = load_policy(doc)
    if not wide.users:
        return
    name = data.draw(st.sampled_from(sorted(wide.users)))
    user = wide.users[name]
    narrowed_scopes = wide.scopes.intersect(user.scopes, restriction) or ("/nowhere",)
    if narrowed_scopes == ("/nowhere",):
        narrowed_users = {**wide.users, name: dataclasses.replace(user, roles=(), scopes=("/",))}
        narrowed_groups = {
            g: dataclasses.replace(grp, members=tuple(m for m in grp.members if m != name))
            for g, grp in wide.groups.items()
        }
        narrow = dataclasses.replace(
            wide, users=frozen_map(narrowed_users), groups=frozen_map(narrowed_groups)
        )
    else:
        narrowed: User = dataclasses.replace(user, scopes=narrowed_scopes)
        narrow = dataclasses.replace(wide, users=frozen_map({**wide.users, name: narrowed}))
    before, after = compile_policy(wide), compile_policy(narrow)
    for resource in SCOPE_POOL:
        for permission in Permission:
            for channel in Channel:
                if after.verdict(name, permission, resource, channel).allowed:
                    assert before.verdict(name, permission, resource, channel).allowed


@settings(max_examples=300, deadline=None)
@given(doc=policy_documents(), data=st.data())
def test_any_flipped_byte_of_a_compiled_policy_is_refused(doc: dict[str, Any], data: st.DataObject) -> None:
    table = compile_policy(load_policy(doc)).table
    position = data.draw(st.integers(0, len(table) - 1))
    flip = data.draw(st.integers(1, 255))
    corrupted = bytearray(table)
    corrupted[position] ^= flip
    with pytest.raises(EvaluatorError):
        NativeEvaluator(bytes(corrupted))


def test_decide_reports_why() -> None:
    doc = {
        "users": {"tom": {"roles": ["operator"], "scopes": ["/modbus"]}, "ann": {"roles": ["secadm"]}},
        "constraints": {"channel_caps": {"panel": {"deny": ["certificate_management"]}}},
    }
    compiled = compile_policy(load_policy(doc))
    out_of_scope = compiled.decide(Request("tom", Permission.PEAK_DEMAND_RESET, "/meter/demand", Channel.SSH))
    assert out_of_scope.outcome is Outcome.DENY
    assert "not for /meter/demand" in out_of_scope.detail
    capped = compiled.decide(Request("ann", Permission.CERTIFICATE_MANAGEMENT, "/", Channel.PANEL))
    assert capped.reason is not None
    assert capped.reason.value == "channel_cap"
    assert compiled.decide(Request("ann", Permission.CERTIFICATE_MANAGEMENT, "/", Channel.SSH)).allowed
