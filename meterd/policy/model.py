"""The policy model: roles, principals, scopes, constraints and settings.

Invariants (checked by the loader before a :class:`Policy` is built, and by
the constructors where a value alone can be checked):
    * Every role, group, user and application name is unique in its kind;
      users and applications share one principal namespace and neither may be
      called ``anonymous``.
    * Every role, group member and scope a principal names exists.
    * Built-in roles are present, unchanged, and cannot be redefined.
    * The model is immutable and performs no I/O; mappings are read-only views.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from types import MappingProxyType
from typing import TypeVar

from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.policy.scope import ROOT, ScopeTree
from meterd.record import record

ANONYMOUS = "anonymous"
#: The principal of meterd's own records (start, stop, the log's housekeeping): no policy may name it.
SYSTEM = "meterd"

K = TypeVar("K")
V = TypeVar("V")


def frozen_map(items: Mapping[K, V] | None = None) -> Mapping[K, V]:
    """Return a read-only copy of ``items`` for use inside frozen dataclasses."""
    return MappingProxyType(dict(items or {}))


@record
class Role:
    """A named, reusable set of permissions.

    Attributes:
        name: Identifier used in policy files.
        permissions: What the role grants.
        description: One line for reviews.
        builtin_id: IEC 62351-8 role number for built-in roles; ``None`` for custom roles.

    """

    name: str
    permissions: frozenset[Permission]
    description: str = ""
    builtin_id: int | None = None

    @property
    def builtin(self) -> bool:
        """True for the immutable IEC 62351-8 roles."""
        return self.builtin_id is not None


@record
class User:
    """A person who logs in with a password, an SSH key or a panel PIN.

    Attributes:
        name: Login name.
        roles: Roles assigned directly.
        password_hash: Memory-hard hash from ``meterctl user hash-password``, or ``None``.
        pin_hash: Front-panel PIN hash in the same format, or ``None``.
        ssh_keys: OpenSSH authorized-key lines.
        scopes: Resource subtrees the user's grants are limited to (``("/",)`` is all of the meter).
        enabled: A disabled user is denied everything.
        full_name: For reviews only.
        break_glass: A local emergency account: when a directory is configured,
            it may log in only while the directory is unreachable, and every
            use raises an alarm record.

    """

    name: str
    roles: tuple[str, ...] = ()
    password_hash: str | None = None
    pin_hash: str | None = None
    ssh_keys: tuple[str, ...] = ()
    scopes: tuple[str, ...] = (ROOT,)
    enabled: bool = True
    full_name: str = ""
    break_glass: bool = False


@record
class Group:
    """A set of users who share roles.

    Attributes:
        name: Identifier used in policy files.
        members: User names.
        roles: Roles every member gets.
        scopes: Where the group's roles apply; intersected with each member's own scopes.
        directory_group: Directory (e.g. Active Directory) group name mapped to this group.

    """

    name: str
    members: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = (ROOT,)
    directory_group: str | None = None


@record
class DirectoryPrincipal:
    """A user a directory vouched for at login; never in a policy file.

    The guard adds one to the policy in force for as long as the user may
    hold sessions, so the compiled table decides for them as for anyone
    else (see :func:`meterd.policy.directory.with_directory`).

    Attributes:
        name: The login name (no local user or application has it).
        groups: Policy groups whose ``directory_group`` the directory reported.
        roles: Roles the directory named directly (RADIUS).
        scopes: Where the principal's grants apply (narrowed by each group's scopes).
        withheld: Permissions removed from every grant (an offline login's cap).
        path: How the login was made: ``ldap``, ``radius`` or ``offline-cache``.
    """

    name: str
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = (ROOT,)
    withheld: frozenset[Permission] = frozenset()
    path: str = "ldap"


@record
class Application:
    """A service account: a SCADA system, the configuration tool, a data collector.

    Attributes:
        name: Identifier used in policy files.
        roles: Roles assigned to the account.
        cert_fingerprints: ``sha256:<hex>`` fingerprints of client certificates.
        ssh_keys: OpenSSH authorized-key lines.
        scopes: Resource subtrees the account is limited to.
        enabled: A disabled account is denied everything.
        description: For reviews only.

    """

    name: str
    roles: tuple[str, ...] = ()
    cert_fingerprints: tuple[str, ...] = ()
    ssh_keys: tuple[str, ...] = ()
    scopes: tuple[str, ...] = (ROOT,)
    enabled: bool = True
    description: str = ""


@record
class Anonymous:
    """What an unauthenticated channel (plain Modbus TCP) may do; nothing by default.

    Attributes:
        roles: Roles granted to the anonymous principal.
        scopes: Where they apply.

    """

    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = (ROOT,)


@record
class Constraints:
    """Rules that hold whatever roles say.

    Attributes:
        separation_of_duties: Permission pairs no principal may hold together.
        dual_control: Permissions whose use needs a second, different approver.
        channel_caps: The most a channel may ever grant; channels absent are uncapped.

    """

    separation_of_duties: tuple[tuple[Permission, Permission], ...] = ()
    dual_control: frozenset[Permission] = frozenset()
    channel_caps: Mapping[Channel, frozenset[Permission]] = field(default_factory=frozen_map)


@record
class PasswordRules:
    """What a new password must satisfy.

    Attributes:
        min_length: Fewest characters.
        min_character_classes: How many of lower, upper, digit, other it must mix.

    """

    min_length: int = 12
    min_character_classes: int = 3


@record
class Settings:
    """Policy-wide limits, all in seconds or counts.

    Attributes:
        demand_reset_lockout: Shortest time between two peak-demand resets.
        login_failure_threshold: Failed logins in a row before an account locks.
        login_lockout: How long a locked account stays locked.
        session_idle_timeout: Idle time after which a session is closed.
        dual_control_timeout: How long a dual-control request waits for its approver.
        password: Rules for new passwords.

    """

    demand_reset_lockout: int = 900
    login_failure_threshold: int = 5
    login_lockout: int = 900
    session_idle_timeout: int = 600
    dual_control_timeout: int = 300
    password: PasswordRules = PasswordRules()


@record
class Policy:
    """A complete, validated policy.  Build it with :func:`meterd.policy.loader.load_policy`.

    Attributes:
        name: Human name of the policy.
        version: Monotonic version number set by the configuration tool.
        roles: Every role by name, built-in ones included.
        users: Users by name.
        groups: Groups by name.
        applications: Applications by name.
        anonymous: The anonymous principal's grants.
        scopes: The resource tree.
        constraints: Separation of duties, dual control, channel caps.
        settings: Lockouts, timeouts, password rules.
        directory_principals: Directory users logged in now (added by the guard, never loaded).

    """

    name: str
    version: int
    roles: Mapping[str, Role]
    users: Mapping[str, User]
    groups: Mapping[str, Group]
    applications: Mapping[str, Application]
    anonymous: Anonymous
    scopes: ScopeTree
    constraints: Constraints
    settings: Settings
    directory_principals: Mapping[str, DirectoryPrincipal] = field(default_factory=frozen_map)

    def groups_of(self, user: str) -> tuple[Group, ...]:
        """Return the groups ``user`` is a member of, in name order."""
        return tuple(g for _, g in sorted(self.groups.items()) if user in g.members)
