"""The ``[directory]`` section of ``meterd.toml``: which directory, how to reach it, what it may do.

Invariants (checked here, so a :class:`DirectorySettings` that exists is usable):
    * Every LDAP server is ``ldaps://`` or used with StartTLS: a plain
      ``ldap://`` URI without ``start_tls = true`` is refused, naming the key.
    * A CA file is required (the servers' certificates are always verified,
      hostname included, TLS 1.2 or newer).
    * Only the SSH (password, keyboard-interactive) and serial channels may
      use the directory; the panel keeps its PINs and Modbus its certificates.
    * Timeouts are bounded: an operation never waits longer than the whole login.

Declared once (:data:`DIRECTORY`, :data:`LDAP`, and
:data:`~meterd.directory.radius_config.RADIUS`), so the README's key reference
lists every key.  This module reads configuration data only; the LDAP
password file is read (and its mode checked) when the daemon starts the
backend (the RADIUS secret when the file is read), and nothing here imports
ldap3, so ``meterd.config`` stays a leaf.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from meterd.configspec import Base, Finish, Key, Loader, Section
from meterd.directory.radius_config import LOADER as RADIUS_LOADER
from meterd.directory.radius_config import RadiusSettings
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.record import record
from meterd.tomlreader import Reader

BACKENDS = ("ldap", "radius")
GROUP_MODES = ("ad-in-chain", "memberof", "member-search")
DIRECTORY_CHANNELS = (Channel.SSH, Channel.SERIAL)
DEFAULT_OFFLINE_CAP = (Permission.USER_MANAGEMENT, Permission.FIRMWARE_MANAGEMENT)
#: Seconds any one LDAP operation may take by default (never more than the whole login).
DEFAULT_OPERATION_TIMEOUT = 5.0


def _servers(reader: Reader, key: Key, values: Mapping[str, Any]) -> tuple[str, ...]:
    del key
    start_tls: bool = values["start_tls"]
    servers = reader.strings("servers")
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
    return servers


def _user_filter(text: str) -> str | None:
    if "{user}" not in text or not (text.startswith("(") and text.endswith(")")):
        return 'must be a parenthesised LDAP filter containing "{user}"'
    return None


def _group_base(reader: Reader, key: Key, values: Mapping[str, Any]) -> str:
    mode = values["group_mode"]
    group_base: str = reader.get(key.name, str, key.default)
    if mode in ("ad-in-chain", "member-search") and not group_base:
        reader.error("group_base", f'is required with group_mode = "{mode}"')
    return group_base


LDAP = Section(
    "directory.ldap",
    'directory login over LDAP (backend = "ldap"): LDAPS or StartTLS only',
    (
        Key("start_tls", bool, False, "upgrade ldap:// servers with StartTLS (required for them)"),
        Key(
            "servers", tuple, (), "ldaps:// (or ldap:// with start_tls) URIs, tried in order", custom=_servers
        ),
        Key("ca", Path, "", "CA certificate the servers' certificates chain to (required)", base=Base.CONFIG),
        Key("bind_dn", str, "", "the service account's DN (required)"),
        Key(
            "bind_password_file",
            Path,
            "",
            "file holding the service account's password, mode 0600 (required)",
            base=Base.CONFIG,
        ),
        Key("user_base", str, "", "where users are searched, subtree (required)"),
        Key(
            "user_filter",
            str,
            "(uid={user})",
            "search filter; {user} is the escaped login name",
            check=_user_filter,
        ),
        Key("upn_suffix", str, "", "Active Directory: name@suffix logins search userPrincipalName"),
        Key("group_mode", str, "memberof", "how a user's groups are resolved", choices=GROUP_MODES),
        Key(
            "group_base",
            str,
            "",
            "where groups are searched (ad-in-chain, member-search)",
            custom=_group_base,
        ),
        Key("group_depth", int, 3, "nesting levels member-search follows", low=1, high=16),
        Key(
            "operation_timeout",
            float,
            DEFAULT_OPERATION_TIMEOUT,
            "seconds one connect, handshake, bind or search may take (at most login_timeout)",
            low=0.1,
            high=60,
        ),
    ),
)


@record
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


def _channels(reader: Reader, key: Key, values: Mapping[str, Any]) -> frozenset[Channel]:
    del values
    by_name = {c.value: c for c in DIRECTORY_CHANNELS}
    channels: set[Channel] = set()
    for i, name in enumerate(reader.strings(key.name, key.default)):
        if name in by_name:
            channels.add(by_name[name])
        else:
            reader.error_item(
                "channels",
                i,
                f"{name!r} cannot use the directory (only {', '.join(by_name)}: "
                "the panel keeps local PINs, Modbus its certificates)",
            )
    return frozenset(channels)


def _offline_cap(reader: Reader, key: Key, values: Mapping[str, Any]) -> frozenset[Permission]:
    del values
    cap: set[Permission] = set()
    known = {p.value: p for p in Permission}
    for i, name in enumerate(reader.strings(key.name, key.default)):
        if name in known:
            cap.add(known[name])
        else:
            reader.error_item("offline_cap", i, f"unknown permission {name!r}")
    return frozenset(cap)


DIRECTORY = Section(
    "directory",
    "directory login (LDAP/Active Directory or RADIUS) for SSH and serial passwords",
    (
        Key("enabled", bool, True, "use the directory (an absent table: local logins only)"),
        Key("backend", str, "ldap", "which directory answers logins", choices=BACKENDS),
        Key(
            "channels",
            tuple,
            tuple(c.value for c in DIRECTORY_CHANNELS),
            "channels whose password logins may use the directory (ssh, serial)",
            custom=_channels,
        ),
        Key("login_timeout", float, 10.0, "seconds a whole directory login may take", low=0.5, high=120),
        Key(
            "session_lifetime",
            float,
            8 * 3600.0,
            "seconds a directory session lasts at most",
            low=60,
            high=7 * 86_400,
        ),
        Key(
            "offline_ttl",
            float,
            86_400.0,
            "seconds a cached credential serves while the directory is unreachable (0: never)",
            low=0,
            high=30 * 86_400,
        ),
        Key(
            "offline_cap",
            tuple,
            tuple(p.value for p in DEFAULT_OFFLINE_CAP),
            "permissions an offline login never has",
            custom=_offline_cap,
        ),
        Key("workers", int, 4, "threads talking to the directory (concurrent logins)", low=1, high=32),
        Key(
            "reachability_max_age",
            float,
            10.0,
            "seconds an unreachable verdict lets break-glass in without asking again (0: always ask)",
            low=0,
            high=300,
        ),
    ),
    tables=("ldap", "radius"),
)


@record
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
        reachability_max_age: Seconds a verdict of *unreachable* (from any directory
            attempt) lets break-glass accounts in without asking the directory again.
        enabled: Always true once loaded (a disabled directory is no settings at all).
        ldap: LDAP settings (``backend = "ldap"``).
        radius: RADIUS settings (``backend = "radius"``).
    """

    backend: str
    channels: frozenset[Channel]
    login_timeout: float
    session_lifetime: float
    offline_ttl: float
    offline_cap: frozenset[Permission]
    workers: int
    reachability_max_age: float = DIRECTORY.default("reachability_max_age")
    enabled: bool = DIRECTORY.default("enabled")
    ldap: LdapSettings | None = None
    radius: RadiusSettings | None = None


_REQUIRED = {
    "ca": "the CA certificate that signed the servers' certificates",
    "bind_dn": "the service account's DN",
    "bind_password_file": "a 0600 file holding the service account's password",
    "user_base": "where users are searched",
}


def _ldap_checks(login_timeout: float) -> Finish:
    """The LDAP table's own checks: the keys without defaults, and a timeout within the login's."""

    def finish(reader: Reader, values: dict[str, Any], bases: Mapping[Base, Path]) -> None:
        del bases
        for key, hint in _REQUIRED.items():
            if not values[key]:
                reader.error(key, f"is required ({hint})")
                values[key] = Path() if key in ("ca", "bind_password_file") else ""
        operation: float = values["operation_timeout"]
        if "operation_timeout" not in reader.table:
            operation = min(operation, login_timeout)
        elif operation > login_timeout:
            reader.error(
                "operation_timeout", f"must not exceed directory.login_timeout ({login_timeout:g} s)"
            )
        values["operation_timeout"] = operation
        values["upn_suffix"] = values["upn_suffix"].lstrip("@").lower()

    return finish


def _backend(reader: Reader, values: dict[str, Any], bases: Mapping[Base, Path]) -> None:
    backend = values["backend"]
    other = "radius" if backend == "ldap" else "ldap"
    if other in reader.table:
        reader.error(other, f'applies to backend = "{other}" only')
    if backend == "ldap":
        ldap = Loader(LDAP, LdapSettings, _ldap_checks(values["login_timeout"]))
        values["ldap"] = ldap.load(reader.sub("ldap"), bases)
    else:
        values["radius"] = RADIUS_LOADER.load(reader.sub("radius"), bases)


#: Reads ``[directory]`` and the table of its backend (relative paths: from the
#: configuration file's directory).
LOADER = Loader(DIRECTORY, DirectorySettings, _backend)
