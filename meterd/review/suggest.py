"""Least-privilege suggestion: the fewest roles that cover what each principal and group used.

Pure.  For each group, the permissions its members used that the group's
roles grant; for each principal, what it used that its (suggested) groups do
not cover.  Each set gets the smallest set of existing roles that covers it
exactly, or, when no combination of existing roles covers it without extra
permissions, a new custom role holding exactly what was used.  Scopes are
kept: the suggestion narrows roles, never widens where they apply.  The
result is a whole policy, so it can be compared with ``policy diff`` and
checked with ``policy lint`` like any other.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations

from meterd.policy.model import ANONYMOUS, Application, Policy, Role, User, frozen_map
from meterd.policy.permissions import Permission
from meterd.record import record
from meterd.review.usage import LogUsage

#: Combinations of existing roles tried per principal; past that a custom role is proposed.
MAX_ROLES = 3


@record
class Suggestion:
    """The proposed roles of one principal or group.

    Attributes:
        subject: ``user NAME``, ``application NAME``, ``group NAME`` or ``anonymous``.
        used: The permissions it used in the window (through these roles).
        roles: The proposed roles.
        was: Its current roles.
        custom: True when ``roles`` is a new custom role.
    """

    subject: str
    used: frozenset[Permission]
    roles: tuple[str, ...]
    was: tuple[str, ...]
    custom: bool


def cover(used: frozenset[Permission], roles: dict[str, frozenset[Permission]]) -> tuple[str, ...] | None:
    """Return the fewest roles whose union is exactly ``used`` (ties: by name), or None.

    Roles granting anything outside ``used`` are never chosen: least privilege
    means no extra permission.
    """
    if not used:
        return ()
    fitting = sorted(name for name, granted in roles.items() if granted and granted <= used)
    for size in range(1, MAX_ROLES + 1):
        for combo in combinations(fitting, size):
            union: frozenset[Permission] = frozenset().union(*(roles[r] for r in combo))
            if union == used:
                return combo
    return None


def _custom_name(subject: str, taken: set[str]) -> str:
    base = "least-" + subject.replace(" ", "-")
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def suggest_policy(policy: Policy, usage: LogUsage) -> tuple[Policy, list[Suggestion]]:
    """Return the suggested policy and what was proposed for whom.

    Disabled principals are left as they are (they are denied everything anyway).
    """
    catalogue = {name: role.permissions for name, role in policy.roles.items()}
    used_by: dict[str, set[Permission]] = {}
    for (name, permission), tally in usage.uses.items():
        if tally.count:
            used_by.setdefault(name, set()).add(permission)
    new_roles: dict[str, Role] = dict(policy.roles)
    suggestions: list[Suggestion] = []

    def propose(subject: str, used: frozenset[Permission], was: tuple[str, ...]) -> tuple[str, ...]:
        found = cover(used, catalogue)
        custom = found is None
        if found is None:
            name = _custom_name(subject, set(new_roles))
            new_roles[name] = Role(name, used, f"Least privilege for {subject}, from the security log")
            catalogue[name] = used
            found = (name,)
        suggestions.append(Suggestion(subject, used, found, was, custom))
        return found

    groups = {}
    group_covers: dict[str, set[Permission]] = {}
    for name, group in sorted(policy.groups.items()):
        granted = frozenset().union(*(policy.roles[r].permissions for r in group.roles))
        used = frozenset(
            p
            for member in group.members
            if policy.users.get(member)
            for p in used_by.get(member, ())
            if p in granted
        )
        roles = propose(f"group {name}", used, group.roles)
        groups[name] = replace(group, roles=roles)
        for member in group.members:
            group_covers.setdefault(member, set()).update(used)
    users = {}
    for name, user in sorted(policy.users.items()):
        if not user.enabled:
            users[name] = user
            continue
        own = frozenset(used_by.get(name, set()) - group_covers.get(name, set()))
        users[name] = replace(user, roles=propose(f"user {name}", own, user.roles))
    applications = {}
    for name, app in sorted(policy.applications.items()):
        if not app.enabled:
            applications[name] = app
            continue
        applications[name] = replace(
            app, roles=propose(f"application {name}", frozenset(used_by.get(name, ())), app.roles)
        )
    anonymous = replace(
        policy.anonymous,
        roles=propose(ANONYMOUS, frozenset(used_by.get(ANONYMOUS, ())), policy.anonymous.roles),
    )
    suggested = replace(
        policy,
        roles=frozen_map(new_roles),
        users=frozen_map(users),
        groups=frozen_map(groups),
        applications=frozen_map(applications),
        anonymous=anonymous,
    )
    return suggested, suggestions


def principals_from_log(builtin: Policy, usage: LogUsage) -> Policy:
    """Return ``builtin`` plus a role-less entry per user and application the log shows using something.

    ``builtin`` is a policy of the built-in roles only; the result is the
    baseline of a suggestion made without the policy in force.

    The log records who did what, not the policy in force (a ``policy_change``
    record names who changed it and the effect, never the whole text), so
    without the policy the suggestion can only propose roles from scratch.
    """
    users = dict(builtin.users)
    applications = dict(builtin.applications)
    for name, kind in sorted(usage.kinds.items()):
        if kind == "user":
            users.setdefault(name, User(name))
        elif kind == "application":
            applications.setdefault(name, Application(name))
    return replace(builtin, users=frozen_map(users), applications=frozen_map(applications))
