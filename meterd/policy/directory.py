"""What a directory login grants: directory groups mapped through ``[groups.X] directory_group``.

Pure.  The guard asks :func:`map_identity` after a directory vouched for a
user, and puts the resulting principals in force with :func:`with_directory`.

Invariants:
    * The roles are the union of every policy group whose ``directory_group``
      the directory reported (plus roles the directory named directly that
      the policy defines); each group's scopes narrow its own roles, as for a
      local member.
    * No matching group and no known role: refused.  A union that holds both
      permissions of a separation-of-duties pair: refused.
    * A directory principal never shadows a local user or application: names
      are compared case-insensitively, and a policy that gains such a local
      name drops the directory principal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from meterd.directory.names import normalise_group
from meterd.policy.grants import held_permissions
from meterd.policy.model import ANONYMOUS, SYSTEM, DirectoryPrincipal, Policy, frozen_map
from meterd.policy.permissions import Permission
from meterd.policy.scope import ROOT
from meterd.record import record


@record
class MappingRefusal:
    """Why a directory user gets no session.

    Attributes:
        reason: ``no_mapped_group``, ``sod_violation`` or ``bad_scope``.
        message: For the log and the operator.
    """

    reason: str
    message: str


def is_local(policy: Policy, name: str) -> bool:
    """True if ``name`` is reserved for the meter's own principals (compared case-insensitively)."""
    folded = name.casefold()
    return folded in {ANONYMOUS, SYSTEM} or any(
        folded == local.casefold() for local in (*policy.users, *policy.applications)
    )


def mapped_groups(policy: Policy, directory_groups: Iterable[str]) -> tuple[str, ...]:
    """The policy groups (by name, sorted) whose ``directory_group`` is among ``directory_groups``."""
    reported = {normalise_group(g) for g in directory_groups}
    return tuple(
        name
        for name, group in sorted(policy.groups.items())
        if group.directory_group and normalise_group(group.directory_group) in reported
    )


def map_identity(
    policy: Policy,
    name: str,
    directory_groups: Iterable[str],
    *,
    roles: Iterable[str] = (),
    scope: str | None = None,
    withheld: frozenset[Permission] = frozenset(),
    path: str = "ldap",
) -> DirectoryPrincipal | MappingRefusal:
    """Map what a directory said about ``name`` onto the policy.

    Args:
        policy: The policy in force.
        name: The login name.
        directory_groups: Group names the directory reported.
        roles: Roles the directory named directly (unknown ones are ignored).
        scope: A scope the directory named, or None for all of the meter.
        withheld: Permissions the session must never have (offline cap).
        path: How the login was made (recorded on the principal).

    Returns:
        The principal to put in force, or why there is none.
    """
    groups = mapped_groups(policy, directory_groups)
    known_roles = tuple(sorted(r for r in set(roles) if r in policy.roles))
    if not groups and not known_roles:
        return MappingRefusal("no_mapped_group", f"no directory group of {name} is mapped to a policy group")
    scopes: tuple[str, ...] = (ROOT,)
    if scope is not None:
        if scope not in policy.scopes:
            return MappingRefusal("bad_scope", f"the directory names scope {scope!r}, which the policy lacks")
        scopes = (scope,)
    principal = DirectoryPrincipal(name, groups, known_roles, scopes, withheld, path)
    trial = with_directory(policy, {name: principal})
    held = held_permissions(trial, name)
    for a, b in policy.constraints.separation_of_duties:
        if a in held and b in held:
            via = ", ".join(groups) or ", ".join(known_roles)
            return MappingRefusal(
                "sod_violation",
                f"{via} together grant {a.value} and {b.value}, which separation of duties forbids",
            )
    return principal


def with_directory(policy: Policy, principals: Mapping[str, DirectoryPrincipal]) -> Policy:
    """Return ``policy`` with ``principals`` as its directory users.

    Principals that the policy no longer allows are dropped: a name now local,
    or whose every group and role is gone (groups and roles removed by a push
    are dropped from the others).
    """
    kept: dict[str, DirectoryPrincipal] = {}
    for name, principal in principals.items():
        if is_local(policy, name):
            continue
        groups = tuple(g for g in principal.groups if g in policy.groups)
        roles = tuple(r for r in principal.roles if r in policy.roles)
        scopes = tuple(s for s in principal.scopes if s in policy.scopes)
        if (groups or roles) and scopes:
            kept[name] = dataclasses.replace(principal, groups=groups, roles=roles, scopes=scopes)
    if not kept and not policy.directory_principals:
        return policy
    return dataclasses.replace(policy, directory_principals=frozen_map(kept))
