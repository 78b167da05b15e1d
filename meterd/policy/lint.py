"""Best-practice review of a valid policy: least privilege and separation of duties.

Findings are errors (the policy must not be applied) or warnings (a person
should look).  Pure: takes a :class:`Policy`, returns findings.
"""

from __future__ import annotations

from enum import Enum

from meterd.policy.builtin import BUILTIN_ROLES
from meterd.policy.grants import PrincipalKind, grants_of, held_permissions, principals
from meterd.policy.model import Policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.record import record


class Severity(Enum):
    """How serious a finding is."""

    ERROR = "error"
    WARNING = "warning"


@record
class Finding:
    """One lint result.

    Attributes:
        severity: Error or warning.
        code: Stable short identifier, e.g. ``sod-violation``.
        subject: The role, principal or constraint concerned.
        message: What is wrong and what to do.

    """

    severity: Severity
    code: str
    subject: str
    message: str

    def render(self) -> str:
        """Return ``severity: code: subject: message``."""
        return f"{self.severity.value}: {self.code}: {self.subject}: {self.message}"


def lint_policy(policy: Policy) -> list[Finding]:
    """Return every finding for ``policy``, errors first, each group in name order."""
    findings = [
        *_separation_of_duties(policy),
        *_user_management_reachable(policy),
        *_unused_roles(policy),
        *_all_powerful(policy),
        *_copies_of_builtins(policy),
        *_empty_groups(policy),
    ]
    return sorted(findings, key=lambda f: (f.severity is not Severity.ERROR, f.code, f.subject))


def _separation_of_duties(policy: Policy) -> list[Finding]:
    out = []
    for principal in principals(policy):
        held = held_permissions(policy, principal.name)
        for a, b in policy.constraints.separation_of_duties:
            if a in held and b in held:
                out.append(
                    Finding(
                        Severity.ERROR,
                        "sod-violation",
                        principal.name,
                        f"holds both {a.value} and {b.value}, which separation of duties forbids together; "
                        "split them across different principals",
                    )
                )
    for role in policy.roles.values():
        for a, b in policy.constraints.separation_of_duties:
            if a in role.permissions and b in role.permissions:
                out.append(
                    Finding(
                        Severity.ERROR,
                        "sod-role",
                        role.name,
                        f"role grants both {a.value} and {b.value}, "
                        "which separation of duties forbids together",
                    )
                )
    return out


def _user_management_reachable(policy: Policy) -> list[Finding]:
    caps = policy.constraints.channel_caps
    if all(Permission.USER_MANAGEMENT not in caps.get(c, frozenset(Permission)) for c in Channel):
        return [
            Finding(
                Severity.ERROR,
                "no-user-manager",
                "constraints.channel_caps",
                "every channel caps off user_management: nobody could ever manage users again",
            )
        ]
    holders = [
        p.name
        for p in principals(policy)
        if p.enabled
        and p.kind is not PrincipalKind.ANONYMOUS
        and Permission.USER_MANAGEMENT in held_permissions(policy, p.name)
    ]
    if holders:
        return []
    return [
        Finding(
            Severity.ERROR,
            "no-user-manager",
            "policy",
            "no enabled user or application holds user_management: nobody could ever manage users "
            'again; give the built-in "rbacmnt" role to an administrator',
        )
    ]


def _unused_roles(policy: Policy) -> list[Finding]:
    used = {g.role for p in principals(policy) for g in grants_of(policy, p.name)}
    used |= {r for g in policy.groups.values() for r in g.roles}
    return [
        Finding(Severity.WARNING, "unused-role", name, "no principal holds this role; remove it or assign it")
        for name, role in sorted(policy.roles.items())
        if not role.builtin and name not in used
    ]


def _all_powerful(policy: Policy) -> list[Finding]:
    everything = frozenset(Permission)
    return [
        Finding(
            Severity.WARNING,
            "all-permissions",
            p.name,
            "holds every permission; least privilege asks for roles cut to each task",
        )
        for p in principals(policy)
        if held_permissions(policy, p.name) == everything
    ]


def _copies_of_builtins(policy: Policy) -> list[Finding]:
    builtin = {r.permissions: r.name for r in BUILTIN_ROLES}
    return [
        Finding(
            Severity.WARNING,
            "copy-of-builtin",
            name,
            f'grants exactly what the built-in role "{builtin[role.permissions]}" grants; use that instead',
        )
        for name, role in sorted(policy.roles.items())
        if not role.builtin and role.permissions in builtin
    ]


def _empty_groups(policy: Policy) -> list[Finding]:
    return [
        Finding(Severity.WARNING, "empty-group", name, "has no members and no directory group; remove it")
        for name, group in sorted(policy.groups.items())
        if not group.members and not group.directory_group
    ]


def lint_directory(policy: Policy) -> list[Finding]:
    """Findings that apply when the meter logs users in through a directory (``[directory]`` is set).

    A directory that cannot be reached must not lock everyone out: at least
    one enabled local ``break_glass`` account is required.
    """
    if any(user.enabled and user.break_glass for user in policy.users.values()):
        return []
    return [
        Finding(
            Severity.ERROR,
            "no-break-glass",
            "users",
            "a directory is configured but no enabled user has break_glass = true: while the directory "
            "is unreachable only cached directory logins (without user management) would work",
        )
    ]
