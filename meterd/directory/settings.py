"""The ``[directory]`` section of ``meterd.toml``: which directory, how to reach it, what it may do.

Invariants (checked here, so a :class:`DirectorySettings` that exists is usable):
    * Every LDAP server is ``ldaps://`` or used with StartTLS: a plain
      ``ldap://`` URI without ``start_tls = true`` is refused, naming the key.
    * A CA file is required (the servers' certificates are always verified,
      hostname included, TLS 1.2 or newer).
    * Only the SSH (password, keyboard-interactive) and serial channels may
      use the directory; the panel keeps its PINs and Modbus its certificates.
    * Timeouts are bounded: an operation never waits longer than the whole login.

This module reads configuration data only; the password file is read (and its
mode checked) when the daemon starts the backend, and nothing here imports
ldap3, so ``meterd.config`` stays a leaf.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.tomlreader import Reader

BACKENDS = ("ldap", "radius")
GROUP_MODES = ("ad-in-chain", "memberof", "member-search")
DIRECTORY_CHANNELS = (Channel.SSH, Channel.SERIAL)
DEFAULT_OFFLINE_CAP = (Permission.USER_MANAGEMENT, Permission.FIRMWARE_MANAGEMENT)
_TOP_KEYS = (
    "enabled",
    "backend",
    "channels",
    "login_timeout",
    "session_lifetime",
    "offline_ttl",
    "offline_cap",
    "workers",
    "ldap",
    "radius",
)
_LDAP_KEYS = (
    "servers",
    "start_tls",
    "ca",
    "bind_dn",
    "bind_password_file",
    "user_base",
    "user_filter",
    "upn_suffix",
    "group_mode",
    "group_base",
    "group_depth",
    "operation_timeout",
)


@dataclass(frozen=True, slots=True)
class LdapSettings:
    """How to reach an LDAP directory (OpenLDAP or Active Directory) and read a user's groups.

    Attributes:
        servers: ``ldaps://`` or ``ldap://`` URIs, tried in order.
        start_tls: Upgrade ``ldap://`` connections with StartTLS (required for them).
        ca: CA certificate file the servers' certificates must chain to (read only).
        bind_dn: The service account's DN.
        bind_password_file: File holding the service account's password (must be 0600).
        user_base: Where users are searched (subtree).
        user_filter: Search filter; ``{user}`` is replaced by the escaped login name.
        upn_suffix: Active Directory: a login ``name@suffix`` is searched by
            ``userPrincipalName`` (and the meter knows the user by that whole name); "" to refuse UPN logins.
        group_mode: ``ad-in-chain`` (Active Directory nested membership through
            the in-chain matching rule), ``memberof`` (the user's ``memberOf``
            attribute) or ``member-search`` (groups whose ``member`` is the user,
            then their parents up to ``group_depth``).
        group_base: Where groups are searched (``ad-in-chain``, ``member-search``).
        group_depth: Nesting levels ``member-search`` follows (1: direct groups only).
        operation_timeout: Seconds any one connect, TLS handshake, bind or search may take.
    """

    servers: tuple[str, ...]
    start_tls: bool
    ca: Path
    bind_dn: str
    bind_password_file: Path
    user_base: str
    user_filter: str
    upn_suffix: str
    group_mode: str
    group_base: str
    group_depth: int
    operation_timeout: float


@dataclass(frozen=True, slots=True)
class DirectorySettings:
    """Directory login as a whole.

    Attributes:
        backend: ``ldap`` or ``radius``.
        channels: Channels whose password logins may use the directory.
        login_timeout: Seconds a whole directory login may take (every server, every step).
        session_lifetime: Seconds a directory session may last before it is closed.
        offline_ttl: Seconds a credential cached at an online login stays usable
            while the directory is unreachable (0: no offline logins).
        offline_cap: Permissions an offline login never has.
        workers: Threads that talk to the directory (bounds concurrent directory logins).
        ldap: LDAP settings (``backend = "ldap"``).
        radius: The RADIUS backend's settings (``backend = "radius"``), as its module defines them.
    """

    backend: str
    channels: frozenset[Channel]
    login_timeout: float
    session_lifetime: float
    offline_ttl: float
    offline_cap: frozenset[Permission]
    workers: int
    ldap: LdapSettings | None = None
    radius: Any = None


def _path(base: Path, text: str) -> Path:
    path = Path(text)
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _ldap(reader: Reader, config_dir: Path, login_timeout: float) -> LdapSettings:
    reader.check_keys(_LDAP_KEYS)
    servers = reader.strings("servers")
    start_tls = reader.get("start_tls", bool, False)
    if not servers:
        reader.error("servers", "at least one server URI is required", "ldaps://dc1.example:636")
    for i, uri in enumerate(servers):
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
        if scheme == "ldap" and not start_tls:
            reader.error_item(
                "servers",
                i,
                f"{uri} is plain LDAP: passwords would cross the network in clear; "
                "use ldaps:// or set start_tls = true",
            )
        elif scheme == "ldaps" and start_tls:
            reader.error_item("servers", i, f"{uri} is already TLS: StartTLS applies to ldap:// URIs only")
        elif scheme not in ("ldap", "ldaps"):
            reader.error_item("servers", i, f'"{uri}" is not an ldaps:// or ldap:// URI')

    def required(key: str, hint: str) -> str:
        value = reader.get(key, str, "")
        if not value:
            reader.error(key, f"is required ({hint})")
        return value

    ca = required("ca", "the CA certificate that signed the servers' certificates")
    password_file = required("bind_password_file", "a 0600 file holding the service account's password")
    user_filter = reader.get("user_filter", str, "(uid={user})")
    if "{user}" not in user_filter or not (user_filter.startswith("(") and user_filter.endswith(")")):
        reader.error("user_filter", 'must be a parenthesised LDAP filter containing "{user}"')
    mode = reader.get("group_mode", str, "memberof")
    if mode not in GROUP_MODES:
        reader.error("group_mode", f"must be one of {', '.join(GROUP_MODES)}, not {mode!r}")
    group_base = reader.get("group_base", str, "")
    if mode in ("ad-in-chain", "member-search") and not group_base:
        reader.error("group_base", f'is required with group_mode = "{mode}"')
    operation = reader.seconds("operation_timeout", min(5.0, login_timeout), 0.1, 60)
    if operation > login_timeout:
        reader.error("operation_timeout", f"must not exceed directory.login_timeout ({login_timeout:g} s)")
    return LdapSettings(
        servers=servers,
        start_tls=start_tls,
        ca=_path(config_dir, ca),
        bind_dn=required("bind_dn", "the service account's DN"),
        bind_password_file=_path(config_dir, password_file),
        user_base=required("user_base", "where users are searched"),
        user_filter=user_filter,
        upn_suffix=reader.get("upn_suffix", str, "").lstrip("@").lower(),
        group_mode=mode,
        group_base=group_base,
        group_depth=reader.bounded_int("group_depth", 3, 1, 16),
        operation_timeout=operation,
    )


def _radius(reader: Reader, config_dir: Path) -> Any:
    # The RADIUS backend owns its settings; imported by name so LDAP-only meters need none of it.
    try:
        module = importlib.import_module("meterd.directory.radius")
    except ImportError:
        reader.error(None, "this meterd has no RADIUS backend")
        return None
    return module.radius_settings(reader, config_dir)


def load(reader: Reader, config_dir: Path) -> DirectorySettings:
    """Read the ``[directory]`` table; problems are recorded on ``reader``.

    Args:
        reader: The section's reader.
        config_dir: The configuration file's directory (base of relative paths).

    Returns:
        The settings (with defaults where a value was invalid; the caller
        raises on the recorded errors).
    """
    reader.check_keys(_TOP_KEYS)
    backend = reader.get("backend", str, "ldap")
    if backend not in BACKENDS:
        reader.error("backend", f"must be one of {', '.join(BACKENDS)}, not {backend!r}")
    by_name = {c.value: c for c in DIRECTORY_CHANNELS}
    channels: set[Channel] = set()
    for i, name in enumerate(reader.strings("channels", tuple(by_name))):
        if name in by_name:
            channels.add(by_name[name])
        else:
            reader.error_item(
                "channels",
                i,
                f"{name!r} cannot use the directory (only {', '.join(by_name)}: "
                "the panel keeps local PINs, Modbus its certificates)",
            )
    cap: set[Permission] = set()
    known = {p.value: p for p in Permission}
    for i, name in enumerate(reader.strings("offline_cap", tuple(p.value for p in DEFAULT_OFFLINE_CAP))):
        if name in known:
            cap.add(known[name])
        else:
            reader.error_item("offline_cap", i, f"unknown permission {name!r}")
    login_timeout = reader.seconds("login_timeout", 10.0, 0.5, 120)
    settings = DirectorySettings(
        backend=backend,
        channels=frozenset(channels),
        login_timeout=login_timeout,
        session_lifetime=reader.seconds("session_lifetime", 8 * 3600.0, 60, 7 * 86_400),
        offline_ttl=reader.seconds("offline_ttl", 86_400.0, 0, 30 * 86_400),
        offline_cap=frozenset(cap),
        workers=reader.bounded_int("workers", 4, 1, 32),
    )
    if backend == "ldap":
        if "radius" in reader.table:
            reader.error("radius", 'applies to backend = "radius" only')
        return replace(settings, ldap=_ldap(reader.sub("ldap"), config_dir, login_timeout))
    if backend == "radius":
        if "ldap" in reader.table:
            reader.error("ldap", 'applies to backend = "ldap" only')
        return replace(settings, radius=_radius(reader.sub("radius"), config_dir))
    return settings
