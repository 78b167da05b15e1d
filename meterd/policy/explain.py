"""Why a request is allowed or denied: the chain of reasons, for people.

The verdict always comes from the compiled policy (the native evaluator);
this module only narrates which role, through which group, at which scope
granted the permission, and which scope or channel cap removed it.
"""

from __future__ import annotations

from meterd.policy.compile import CompiledPolicy
from meterd.policy.grants import grants_of
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.policy.review import describe_grant
from meterd.policy.scope import ScopePathError, contains
from meterd.policy.table import Verdict
from meterd.record import record


@record
class Explanation:
    """The verdict on one request and the reasons behind it.

    Attributes:
        verdict: The native evaluator's verdict.
        reasons: One line per step, in the order they were applied.

    """

    verdict: Verdict

    reasons: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        """True when the request is allowed by policy."""
        return self.verdict is Verdict.ALLOW


def explain(
    compiled: CompiledPolicy, principal: str, permission: Permission, resource: str, channel: Channel
) -> Explanation:
    """Return the verdict on a request and the chain of reasons behind it."""
    policy = compiled.policy
    verdict = compiled.verdict(principal, permission, resource, channel)
    reasons: list[str] = []
    if compiled.principal_index(principal) is None:
        return Explanation(verdict, (f'"{principal}" is not a user, application or "anonymous": deny',))
    if principal in policy.users and not policy.users[principal].enabled:
        reasons.append(f"{principal} is disabled")
    if principal in policy.applications and not policy.applications[principal].enabled:
        reasons.append(f"{principal} is disabled")
    try:
        node_path = policy.scopes.paths[policy.scopes.resolve(resource)]
    except ScopePathError as e:
        return Explanation(verdict, (f"bad resource: {e}",))
    grants = grants_of(policy, principal)
    if not grants:
        reasons.append(f"{principal} has no roles")
    for grant in grants:
        if permission not in grant.permissions:
            reasons.append(f"{describe_grant(grant)}: does not grant {permission.value}")
        elif any(contains(scope, node_path) for scope in grant.scopes):
            reasons.append(f"{describe_grant(grant)}: grants {permission.value} for {resource}")
        else:
            reasons.append(f"{describe_grant(grant)}: grants {permission.value}, but not for {resource}")
    caps = policy.constraints.channel_caps
    if channel in caps:
        capped = permission not in caps[channel]
        reasons.append(
            f"channel {channel.value} cap {'withholds' if capped else 'allows'} {permission.value}"
        )
    if permission in policy.constraints.dual_control:
        reasons.append(f"{permission.value} is under dual control: each use also needs a second approver")
    reasons.append(
        "verdict: allow" if verdict is Verdict.ALLOW else f"verdict: deny ({verdict.name.lower()})"
    )
    return Explanation(verdict, tuple(reasons))
