"""Building a validated :class:`Policy` from parsed ``policy.toml`` data.

Pure: takes the dictionary ``tomllib`` produced and the file name for
messages, returns a :class:`Policy` or raises :class:`PolicyValidationError` listing
every problem with its key path.  Reading the file is
:mod:`meterd.policy.files`' job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from meterd.credentials import parse_hash
from meterd.errors import ConfigError, CredentialError, PolicyValidationError
from meterd.policy.builtin import BUILTIN_BY_NAME
from meterd.policy.keys import check_authorized_key, check_fingerprint
from meterd.policy.model import (
    ANONYMOUS,
    SYSTEM,
    Anonymous,
    Application,
    Constraints,
    Group,
    PasswordRules,
    Policy,
    Role,
    Settings,
    User,
    frozen_map,
)
from meterd.policy.permissions import BY_ID, Permission
from meterd.policy.request import Channel
from meterd.policy.scope import METER_RESOURCES, ScopePathError, ScopeTree, split_path
from meterd.tomlreader import Reader, suggest

# Names of users, roles, groups and applications.  They also name files (the demo
# PKI), which is one more reason a name never holds "/" or starts with ".".
NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_TOP = (
    "policy",
    "settings",
    "scopes",
    "roles",
    "users",
    "groups",
    "applications",
    "anonymous",
    "constraints",
)
DAY = 86_400


def load_policy(data: Mapping[str, Any], source: str = "policy.toml") -> Policy:
    """Validate parsed policy data and build the immutable model.

    Args:
        data: What ``tomllib.load`` returned.
        source: File name used in every message.

    Returns:
        The validated policy.

    Raises:
        PolicyValidationError: Listing every problem found, each with its key path.

    """
    errors: list[ConfigError] = []
    top = Reader(data, "", source, errors)
    top.check_keys(_TOP)
    meta = top.sub("policy")
    meta.check_keys(("name", "version", "description"))
    scopes = _scopes(top.sub("scopes"))
    roles = _roles(top.sub("roles"))
    loader = _PrincipalLoader(roles, scopes, errors, source)
    users = loader.users(top.sub("users"))
    groups = loader.groups(top.sub("groups"), users)
    applications = loader.applications(top.sub("applications"), users)
    anonymous = loader.anonymous(top.sub("anonymous"))
    constraints = _constraints(top.sub("constraints"), roles)
    settings = _settings(top.sub("settings"))
    name = meta.get("name", str, "unnamed policy")
    version = meta.bounded_int("version", 1, 0, 2**32 - 1)
    meta.get("description", str, "")
    if errors:
        raise PolicyValidationError(errors)
    return Policy(
        name=name,
        version=version,
        roles=frozen_map(roles),
        users=frozen_map(users),
        groups=frozen_map(groups),
        applications=frozen_map(applications),
        anonymous=anonymous,
        scopes=scopes,
        constraints=constraints,
        settings=settings,
    )


def _scopes(reader: Reader) -> ScopeTree:
    reader.check_keys(("paths",))
    good = []
    for i, path in enumerate(reader.strings("paths")):
        try:
            split_path(path)
        except ScopePathError as e:
            reader.error_item("paths", i, str(e))
        else:
            good.append(path)
    return ScopeTree((*METER_RESOURCES, *good))


def _permissions(reader: Reader, key: str) -> frozenset[Permission]:
    out = set()
    for i, name in enumerate(reader.strings(key)):
        permission = BY_ID.get(name)
        if permission is None:
            reader.error_item(key, i, f'unknown permission "{name}"', suggest(name, BY_ID))
        else:
            out.add(permission)
    return frozenset(out)


def _roles(reader: Reader) -> dict[str, Role]:
    roles = dict(BUILTIN_BY_NAME)
    for name, role in reader.tables():
        if name in BUILTIN_BY_NAME:
            reader.error(name, f'"{name}" is a built-in role and cannot be redefined')
            continue
        if not NAME_PATTERN.match(name):
            reader.error(name, f'role name "{name}" must be lower case letters, digits, "_", "-" or "."')
            continue
        role.check_keys(("permissions", "description"))
        permissions = _permissions(role, "permissions")
        if not permissions and "permissions" in role.table:
            role.error("permissions", "a role must grant at least one permission")
        roles[name] = Role(name, permissions, role.get("description", str, ""))
    return roles


class _PrincipalLoader:
    """Shared checks for users, groups, applications and the anonymous principal."""

    def __init__(self, roles: Mapping[str, Role], scopes: ScopeTree, errors: list[ConfigError], source: str):
        self.roles = roles
        self.scopes = scopes
        self.errors = errors
        self.source = source

    def role_list(self, reader: Reader) -> tuple[str, ...]:
        names = reader.strings("roles")
        for i, name in enumerate(names):
            if name not in self.roles:
                reader.error_item("roles", i, f'unknown role "{name}"', suggest(name, self.roles))
        if len(set(names)) != len(names):
            reader.error("roles", "lists a role twice")
        return tuple(n for n in names if n in self.roles)

    def scope_list(self, reader: Reader) -> tuple[str, ...]:
        names = reader.strings("scopes", ("/",))
        if not names:
            reader.error("scopes", 'an empty scope list would grant nothing; leave it out for "/"')
        for i, name in enumerate(names):
            if name not in self.scopes:
                reader.error_item("scopes", i, f'unknown scope "{name}"', suggest(name, self.scopes.paths))
        return tuple(n for n in names if n in self.scopes) or ("/",)

    def name_ok(self, reader: Reader, name: str, kind: str) -> bool:
        if not NAME_PATTERN.match(name):
            reader.error(name, f'{kind} name "{name}" must be lower case letters, digits, "_", "-" or "."')
            return False
        if name == ANONYMOUS:
            reader.error(name, f'"{ANONYMOUS}" is reserved for the unauthenticated principal')
            return False
        if name == SYSTEM:
            # The log names meterd's own records so: no person or program may act under it.
            reader.error(name, f'"{SYSTEM}" is reserved for meterd\'s own records')
            return False
        return True

    def secret(self, reader: Reader, key: str) -> str | None:
        value = reader.get(key, str, "")
        if not value:
            return None
        try:
            parse_hash(value)
        except CredentialError as e:
            reader.error(key, str(e))
            return None
        return value

    def ssh_keys(self, reader: Reader) -> tuple[str, ...]:
        keys = reader.strings("ssh_keys")
        for i, line in enumerate(keys):
            problem = check_authorized_key(line)
            if problem:
                reader.error_item("ssh_keys", i, problem)
        return keys

    def users(self, reader: Reader) -> dict[str, User]:
        users = {}
        for name, entry in reader.tables():
            if not self.name_ok(reader, name, "user"):
                continue
            entry.check_keys(
                ("roles", "password", "pin", "ssh_keys", "scopes", "enabled", "full_name", "break_glass")
            )
            users[name] = User(
                name=name,
                roles=self.role_list(entry),
                password_hash=self.secret(entry, "password"),
                pin_hash=self.secret(entry, "pin"),
                ssh_keys=self.ssh_keys(entry),
                scopes=self.scope_list(entry),
                enabled=entry.get("enabled", bool, True),
                full_name=entry.get("full_name", str, ""),
                break_glass=entry.get("break_glass", bool, False),
            )
        return users

    def groups(self, reader: Reader, users: Mapping[str, User]) -> dict[str, Group]:
        groups = {}
        for name, entry in reader.tables():
            if not NAME_PATTERN.match(name):
                reader.error(name, f'group name "{name}" must be lower case letters, digits, "_", "-" or "."')
                continue
            entry.check_keys(("members", "roles", "scopes", "directory_group"))
            members = entry.strings("members")
            for i, member in enumerate(members):
                if member not in users:
                    entry.error_item("members", i, f'unknown user "{member}"', suggest(member, users))
            directory = entry.get("directory_group", str, "")
            groups[name] = Group(
                name=name,
                members=tuple(m for m in members if m in users),
                roles=self.role_list(entry),
                scopes=self.scope_list(entry),
                directory_group=directory or None,
            )
        return groups

    def applications(self, reader: Reader, users: Mapping[str, User]) -> dict[str, Application]:
        apps = {}
        for name, entry in reader.tables():
            if not self.name_ok(reader, name, "application"):
                continue
            if name in users:
                reader.error(name, f'"{name}" is already a user; users and applications share one namespace')
                continue
            entry.check_keys(("roles", "cert_fingerprints", "ssh_keys", "scopes", "enabled", "description"))
            fingerprints = entry.strings("cert_fingerprints")
            for i, fingerprint in enumerate(fingerprints):
                problem = check_fingerprint(fingerprint)
                if problem:
                    entry.error_item("cert_fingerprints", i, problem)
            apps[name] = Application(
                name=name,
                roles=self.role_list(entry),
                cert_fingerprints=tuple(f.lower() for f in fingerprints),
                ssh_keys=self.ssh_keys(entry),
                scopes=self.scope_list(entry),
                enabled=entry.get("enabled", bool, True),
                description=entry.get("description", str, ""),
            )
        return apps

    def anonymous(self, reader: Reader) -> Anonymous:
        reader.check_keys(("roles", "scopes"))
        return Anonymous(roles=self.role_list(reader), scopes=self.scope_list(reader))


def _constraints(reader: Reader, roles: Mapping[str, Role]) -> Constraints:
    reader.check_keys(("separation_of_duties", "dual_control", "channel_caps"))
    pairs: list[tuple[Permission, Permission]] = []
    for i, pair in enumerate(reader.get("separation_of_duties", list, [])):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            reader.error_item("separation_of_duties", i, "must be a pair of permission names")
            continue
        found = [BY_ID.get(p) for p in pair]
        for j, (text, permission) in enumerate(zip(pair, found, strict=True)):
            if permission is None:
                reader.error_item(
                    "separation_of_duties", (i, j), f'unknown permission "{text}"', suggest(text, BY_ID)
                )
        a, b = found
        if a is not None and b is not None:
            if a is b:
                reader.error_item("separation_of_duties", i, "pairs a permission with itself")
            else:
                pairs.append((a, b))
    dual = _permissions(reader, "dual_control")
    caps = _channel_caps(reader.sub("channel_caps"), roles)
    return Constraints(tuple(pairs), dual, frozen_map(caps))


def _channel_caps(reader: Reader, roles: Mapping[str, Role]) -> dict[Channel, frozenset[Permission]]:
    caps: dict[Channel, frozenset[Permission]] = {}
    by_value = {c.value: c for c in Channel}
    for name, cap in reader.tables():
        channel = by_value.get(name)
        if channel is None:
            reader.error(name, f'unknown channel "{name}"', suggest(name, by_value))
            continue
        cap.check_keys(("permissions", "roles", "deny"))
        # Without an allow-list the cap starts from everything; "deny" then narrows it.
        allowed: set[Permission] = set(Permission)
        if "permissions" in cap.table or "roles" in cap.table:
            allowed = set(_permissions(cap, "permissions"))
            for i, role in enumerate(cap.strings("roles")):
                if role in roles:
                    allowed |= roles[role].permissions
                else:
                    cap.error_item("roles", i, f'unknown role "{role}"', suggest(role, roles))
        caps[channel] = frozenset(allowed - _permissions(cap, "deny"))
    return caps


def _settings(reader: Reader) -> Settings:
    reader.check_keys(
        (
            "demand_reset_lockout",
            "login_failure_threshold",
            "login_lockout",
            "session_idle_timeout",
            "dual_control_timeout",
            "password",
        )
    )
    password = reader.sub("password")
    password.check_keys(("min_length", "min_character_classes"))
    return Settings(
        demand_reset_lockout=reader.bounded_int("demand_reset_lockout", 900, 0, 31 * DAY),
        login_failure_threshold=reader.bounded_int("login_failure_threshold", 5, 1, 100),
        login_lockout=reader.bounded_int("login_lockout", 900, 1, DAY),
        session_idle_timeout=reader.bounded_int("session_idle_timeout", 600, 10, DAY),
        dual_control_timeout=reader.bounded_int("dual_control_timeout", 300, 10, DAY),
        password=PasswordRules(
            min_length=password.bounded_int("min_length", 12, 8, 128),
            min_character_classes=password.bounded_int("min_character_classes", 3, 1, 4),
        ),
    )
