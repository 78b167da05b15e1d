"""The meter's local credentials as one immutable snapshot, and how a policy seeds them.

Credentials are the meter's, policy is the configuration tool's: password
hashes, panel PINs and SSH keys of local users live in the credential store
(state directory), not in the policy in force.  A policy may still carry
credentials for a user; they are *initial* credentials, taken only for a user
the meter holds nothing for yet.

Invariants:
    * A :class:`Credentials` snapshot is immutable and holds no empty entry.
    * :func:`seed` never changes the entry of a user the snapshot already
      holds; it only adds entries for new users and drops those of users the
      policy no longer has (so a re-created name never inherits old secrets).
    * Applications keep their certificate fingerprints and SSH keys in the
      policy: they are service accounts the configuration tool provisions.
    * Pure: no I/O (the store's text is encoded and decoded here, read and
      written by the daemon).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from meterd.credentials import parse_hash
from meterd.errors import ConfigError, CredentialError
from meterd.policy.grants import PrincipalKind, held_permissions, principals
from meterd.policy.keys import check_authorized_key
from meterd.policy.lint import Finding, Severity
from meterd.policy.loader import NAME_PATTERN
from meterd.policy.model import Policy, frozen_map
from meterd.policy.permissions import Permission
from meterd.record import record

#: The credential store's format number.
STORE_FORMAT = 1


@record
class UserCredentials:
    """What one local user can log in with.

    Attributes:
        password_hash: scrypt hash of the password, or ``None``.
        pin_hash: scrypt hash of the front-panel PIN, or ``None``.
        ssh_keys: OpenSSH authorized-key lines.
    """

    password_hash: str | None = None
    pin_hash: str | None = None
    ssh_keys: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True if this holds no credential at all."""
        return self.password_hash is None and self.pin_hash is None and not self.ssh_keys


@record
class Credentials:
    """Every local user's credentials, by user name (read-only).

    Attributes:
        users: Entries by user name; none is empty.
    """

    users: Mapping[str, UserCredentials] = field(default_factory=frozen_map)

    def __post_init__(self) -> None:
        object.__setattr__(self, "users", frozen_map({k: v for k, v in self.users.items() if not v.empty}))

    def of(self, name: str) -> UserCredentials:
        """The credentials of ``name`` (empty if the meter holds none)."""
        return self.users.get(name) or UserCredentials()

    def with_user(self, name: str, entry: UserCredentials) -> Credentials:
        """Return a copy where ``name`` has ``entry`` (an empty entry removes the user)."""
        return Credentials({**self.users, name: entry})


def initial_credentials(policy: Policy) -> Credentials:
    """The credentials ``policy`` itself carries for its users."""
    return Credentials(
        {
            name: UserCredentials(user.password_hash, user.pin_hash, user.ssh_keys)
            for name, user in policy.users.items()
        }
    )


def seed(known: Credentials, policy: Policy) -> Credentials:
    """The credentials once ``policy`` is in force.

    Users of ``policy`` that ``known`` holds keep exactly their entry; the
    others get what ``policy`` carries for them; entries of users ``policy``
    does not have are dropped.
    """
    initial = initial_credentials(policy)
    return Credentials({name: known.users.get(name) or initial.of(name) for name in policy.users})


def without_credentials(policy: Policy) -> Policy:
    """Return ``policy`` with every user's password hash, PIN hash and SSH keys removed."""
    users = {
        name: dataclasses.replace(user, password_hash=None, pin_hash=None, ssh_keys=())
        for name, user in policy.users.items()
    }
    return dataclasses.replace(policy, users=frozen_map(users))


def changed_users(before: Credentials, after: Credentials) -> tuple[list[str], list[str]]:
    """Return (users whose entry was added or changed, users whose entry was removed), in name order."""
    changed = sorted(n for n, e in after.users.items() if before.users.get(n) != e)
    removed = sorted(n for n in before.users if n not in after.users)
    return changed, removed


def user_management_logins(policy: Policy, credentials: Credentials) -> list[str]:
    """Enabled holders of ``user_management`` that could log in where users are managed.

    A user needs a password or an SSH key on the meter (a panel PIN reaches no
    user management); an application a certificate or an SSH key.
    """
    out = []
    for p in principals(policy):
        if not p.enabled or p.kind is PrincipalKind.ANONYMOUS:
            continue
        if Permission.USER_MANAGEMENT not in held_permissions(policy, p.name):
            continue
        app = policy.applications.get(p.name)
        app_login = app is not None and bool(app.cert_fingerprints or app.ssh_keys)
        held = credentials.of(p.name)
        user_login = p.name in policy.users and (held.password_hash is not None or bool(held.ssh_keys))
        if app_login or user_login:
            out.append(p.name)
    return sorted(out)


def lint_credentials(policy: Policy, credentials: Credentials) -> list[Finding]:
    """Warn about every enabled local user who would have no credential on the meter.

    Args:
        policy: The policy to check.
        credentials: What the meter would hold with ``policy`` in force (:func:`seed`).
    """
    return [
        Finding(
            Severity.WARNING,
            "no-credential",
            name,
            "enabled local user would have no credential on the meter: cannot log in until one is set "
            "(`user reset-password` on the meter)",
        )
        for name, user in sorted(policy.users.items())
        if user.enabled and name not in credentials.users
    ]


def _hash(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: not a string")
    try:
        parse_hash(value)
    except CredentialError as e:
        raise ConfigError(f"{where}: {e}") from e
    return value


def _keys(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{where}: not a list of key lines")
    for line in value:
        problem = check_authorized_key(line)
        if problem:
            raise ConfigError(f"{where}: {problem}")
    return tuple(value)


def decode_store(text: str) -> Credentials:
    """Parse a credential store's text.

    Raises:
        ConfigError: It is not a well-formed store of a known format.
    """
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"not valid JSON: {e}") from e
    users_data = data.get("users") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != STORE_FORMAT or not isinstance(users_data, dict):
        raise ConfigError(f'not a credential store of format {STORE_FORMAT} (a "users" object)')
    users = {}
    for name, entry in users_data.items():
        if not NAME_PATTERN.fullmatch(name) or not isinstance(entry, dict):
            raise ConfigError(f"user {name!r}: bad name or entry")
        unknown = set(entry) - {"password", "pin", "ssh_keys"}
        if unknown:
            raise ConfigError(f"user {name!r}: unknown fields {sorted(unknown)}")
        users[name] = UserCredentials(
            _hash(entry.get("password"), f"user {name!r} password"),
            _hash(entry.get("pin"), f"user {name!r} pin"),
            _keys(entry.get("ssh_keys", []), f"user {name!r} ssh_keys"),
        )
    return Credentials(users)


def encode_store(credentials: Credentials) -> bytes:
    """The credential store's text for ``credentials`` (sorted: equal snapshots give equal bytes).

    Format: ``{"format": 1, "users": {"<name>": {"password": "$scrypt$...",
    "pin": "$scrypt$...", "ssh_keys": ["ssh-ed25519 AAAA..."]}}}``; an absent
    field means none.  Hashes and public keys only, never a clear-text secret.
    """
    users: dict[str, dict[str, Any]] = {}
    for name, entry in sorted(credentials.users.items()):
        out: dict[str, Any] = {}
        if entry.password_hash is not None:
            out["password"] = entry.password_hash
        if entry.pin_hash is not None:
            out["pin"] = entry.pin_hash
        if entry.ssh_keys:
            out["ssh_keys"] = list(entry.ssh_keys)
        users[name] = out
    return (json.dumps({"format": STORE_FORMAT, "users": users}, indent=1, sort_keys=True) + "\n").encode()
