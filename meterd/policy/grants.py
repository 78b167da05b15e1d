"""Who holds what, where, and why: the policy's grants flattened per principal.

This is the one place the assignment rules live (direct roles, group roles,
scope intersection); the compiler, lint, explain, review and diff all read
grants from here rather than re-deriving them.
"""

from __future__ import annotations

from enum import Enum

from meterd.policy.model import ANONYMOUS, Policy
from meterd.policy.permissions import Permission
from meterd.policy.scope import minimal
from meterd.record import record


class PrincipalKind(Enum):
    """What sort of principal a name denotes."""

    USER = "user"
    APPLICATION = "application"
    ANONYMOUS = "anonymous"


@record
class Principal:
    """A principal as the permission core sees it.

    Attributes:
        name: User or application name, or ``anonymous``.
        kind: User, application or anonymous.
        enabled: Disabled principals are denied everything.

    """

    name: str
    kind: PrincipalKind
    enabled: bool


@record
class Grant:
    """One role reaching one principal, and where it applies.

    Attributes:
        role: The role's name.
        via: The group it came through, or ``None`` for a direct assignment.
        scopes: The subtrees it applies to (the principal's scopes, narrowed
            by the group's); empty when the restrictions do not overlap.
        permissions: What the role grants.

    """

    role: str
    via: str | None
    scopes: tuple[str, ...]
    permissions: frozenset[Permission]


def principals(policy: Policy) -> tuple[Principal, ...]:
    """Return every principal in compiled-table order: users, applications, directory users, anonymous."""
    out = [Principal(n, PrincipalKind.USER, u.enabled) for n, u in sorted(policy.users.items())]
    out += [
        Principal(n, PrincipalKind.APPLICATION, a.enabled) for n, a in sorted(policy.applications.items())
    ]
    out += [Principal(n, PrincipalKind.USER, True) for n in sorted(policy.directory_principals)]
    out.append(Principal(ANONYMOUS, PrincipalKind.ANONYMOUS, True))
    return tuple(out)


def grants_of(policy: Policy, name: str) -> tuple[Grant, ...]:
    """Return every grant reaching principal ``name`` (empty for an unknown name)."""
    roles = policy.roles
    if name in policy.users:
        user = policy.users[name]
        out = [Grant(r, None, user.scopes, roles[r].permissions) for r in user.roles]
        for group in policy.groups_of(name):
            scopes = policy.scopes.intersect(user.scopes, group.scopes)
            out += [Grant(r, group.name, scopes, roles[r].permissions) for r in group.roles]
        return tuple(out)
    if name in policy.applications:
        app = policy.applications[name]
        return tuple(Grant(r, None, app.scopes, roles[r].permissions) for r in app.roles)
    if name in policy.directory_principals:
        remote = policy.directory_principals[name]
        out = [Grant(r, None, remote.scopes, roles[r].permissions - remote.withheld) for r in remote.roles]
        for group in (policy.groups[g] for g in remote.groups):
            scopes = policy.scopes.intersect(remote.scopes, group.scopes)
            out += [Grant(r, group.name, scopes, roles[r].permissions - remote.withheld) for r in group.roles]
        return tuple(out)
    if name == ANONYMOUS:
        anon = policy.anonymous
        return tuple(Grant(r, None, anon.scopes, roles[r].permissions) for r in anon.roles)
    return ()


def held_permissions(policy: Policy, name: str) -> frozenset[Permission]:
    """Return every permission ``name`` holds somewhere in the meter (ignoring channel caps)."""
    held: set[Permission] = set()
    for grant in grants_of(policy, name):
        if grant.scopes:
            held |= grant.permissions
    return frozenset(held)


def effective_pairs(policy: Policy, name: str) -> frozenset[tuple[Permission, str]]:
    """Return ``(permission, scope)`` pairs held, each scope minimal for its permission."""
    by_permission: dict[Permission, set[str]] = {}
    for grant in grants_of(policy, name):
        for permission in grant.permissions:
            by_permission.setdefault(permission, set()).update(grant.scopes)
    return frozenset((p, s) for p, scopes in by_permission.items() for s in minimal(scopes))
