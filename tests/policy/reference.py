"""A pure-Python reference evaluator, written from the policy model alone.

It shares no code with the compiler (``meterd.policy.grants``/``compile``) or
the native evaluator: scope restrictions are applied as "the resource lies in
one of the principal's scopes and in one of the group's scopes" instead of
intersecting subtrees, so the two formulations check each other.
"""

from __future__ import annotations

from meterd.policy.model import ANONYMOUS, Policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.policy.table import Verdict


def _within(scope: str, resource: str) -> bool:
    return scope == "/" or resource == scope or resource.startswith(scope + "/")


def _well_formed(resource: str) -> bool:
    if not resource.startswith("/"):
        return False
    if resource == "/":
        return True
    parts = resource[1:].split("/")
    return len(parts) <= 16 and all(_segment_ok(p) for p in parts)


def _segment_ok(part: str) -> bool:
    plain = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
    return 1 <= len(part) <= 64 and part[0] in plain and all(c in plain or c in ".-" for c in part)


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return any(_within(x, y) or _within(y, x) for x in a for y in b)


def reference_verdict(
    policy: Policy, principal: str, permission: Permission, resource: str, channel: Channel
) -> Verdict:
    """Decide one request the slow, obvious way."""
    if not _well_formed(resource):
        return Verdict.BAD_REQUEST
    # (role names, restriction sets that must all contain the resource)
    assignments: list[tuple[str, tuple[tuple[str, ...], ...]]] = []
    if principal in policy.users:
        user = policy.users[principal]
        if not user.enabled:
            return Verdict.DISABLED
        assignments += [(r, (user.scopes,)) for r in user.roles]
        for group in policy.groups.values():
            if principal in group.members:
                assignments += [(r, (user.scopes, group.scopes)) for r in group.roles]
    elif principal in policy.applications:
        app = policy.applications[principal]
        if not app.enabled:
            return Verdict.DISABLED
        assignments += [(r, (app.scopes,)) for r in app.roles]
    elif principal == ANONYMOUS:
        assignments += [(r, (policy.anonymous.scopes,)) for r in policy.anonymous.roles]
    else:
        return Verdict.UNKNOWN_PRINCIPAL

    holding = [
        restrictions
        for role, restrictions in assignments
        if permission in policy.roles[role].permissions
        and (len(restrictions) == 1 or _overlap(restrictions[0], restrictions[1]))
    ]
    if not holding:
        return Verdict.NOT_GRANTED
    if not any(all(any(_within(s, resource) for s in r) for r in restrictions) for restrictions in holding):
        return Verdict.OUT_OF_SCOPE
    cap = policy.constraints.channel_caps.get(channel)
    if cap is not None and permission not in cap:
        return Verdict.CHANNEL_CAP
    return Verdict.ALLOW
