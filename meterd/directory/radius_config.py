"""The ``[directory.radius]`` table of ``meterd.toml``, validated into :class:`RadiusSettings`.

Servers are IP addresses, never host names: a DNS lookup is a wait that a
login deadline cannot bound.  The shared secret is read here, once, from a
file only its owner may read (mode 0600 or stricter), so a bad secret file
stops the daemon at start with the key path instead of failing each login.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from meterd.configspec import Base, Key, Loader, Section
from meterd.errors import ConfigError, ConfigValidationError
from meterd.record import record
from meterd.tomlreader import Reader

#: Where directory group names come from in an Access-Accept (RADIUS dictionary names).
GROUP_ATTRIBUTES = {"Class": "class", "Filter-Id": "filter-id"}
MAX_SERVERS = 2
#: The draft that deprecates insecure RADIUS practice asks for at least 16 random octets.
MIN_SECRET = 16
MAX_SECRET = 1024
#: meterd's private enterprise number, the one its syslog structured data uses.
DEFAULT_VENDOR_ID = 50316


@record
class RadiusServer:
    """One RADIUS server.

    Attributes:
        host: Its IP address, in the form ``recvfrom`` reports (``::1``, not ``0::1``).
        port: Its authentication port.
    """

    host: str
    port: int

    @property
    def uri(self) -> str:
        """``radius://host:port`` (IPv6 in brackets), as messages and identities name it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"radius://{host}:{self.port}"


def parse_server(text: str) -> RadiusServer:
    """Parse ``ip``, ``ip:port`` or ``[ipv6]:port`` (port 1812 when absent).

    Raises:
        ValueError: If the text is not an IP address with an optional port.
    """
    host, port = text, "1812"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("write an IPv6 server as [address]:port")
        port = rest[1:] or port
    elif text.count(":") == 1:
        host, port = text.split(":")
    address = ipaddress.ip_address(host)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f'port "{port}" is not between 1 and 65535')
    return RadiusServer(str(address), int(port))


def _servers(reader: Reader) -> tuple[RadiusServer, ...]:
    if "servers" not in reader.table:
        reader.error("servers", 'at least one RADIUS server is required, e.g. ["192.0.2.10:1812"]')
        return ()
    texts = reader.strings("servers")
    if not 1 <= len(texts) <= MAX_SERVERS:
        reader.error("servers", f"must list 1 to {MAX_SERVERS} servers, not {len(texts)}")
    out: list[RadiusServer] = []
    for i, text in enumerate(texts[:MAX_SERVERS]):
        try:
            server = parse_server(text)
        except ValueError as e:
            reader.error_item(
                "servers", i, f'"{text}" is not an IP address with an optional port ({e}); no host names'
            )
            continue
        if server in out:
            reader.error_item("servers", i, f'"{text}" is listed twice')
        out.append(server)
    return tuple(out)


def _secret(reader: Reader, path: Path) -> bytes:
    """Read the shared secret, insisting the file is a regular file only its owner can read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        reader.error("secret_file", f"cannot open {path}: {e.strerror}")
        return b""
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            reader.error("secret_file", f"{path} is not a regular file")
            return b""
        if info.st_mode & 0o077:
            reader.error(
                "secret_file",
                f"{path} has mode {stat.S_IMODE(info.st_mode):04o}: the shared secret must be readable"
                " by its owner only (chmod 600)",
            )
            return b""
        raw = f.read(MAX_SECRET + 2)
    # A file written by `echo` ends in a newline that is not part of the secret.
    secret = raw.removesuffix(b"\n").removesuffix(b"\r")
    if not MIN_SECRET <= len(secret) <= MAX_SECRET:
        reader.error(
            "secret_file", f"the shared secret in {path} must be {MIN_SECRET} to {MAX_SECRET} octets long"
        )
        return b""
    return secret


def _servers_key(reader: Reader, key: Key, values: Mapping[str, Any]) -> tuple[RadiusServer, ...]:
    del key, values
    return _servers(reader)


def _nas_identifier(text: str) -> str | None:
    return None if 1 <= len(text.encode()) <= 253 else "must be 1 to 253 octets long"


def _group_attribute(reader: Reader, key: Key, values: Mapping[str, Any]) -> str:
    del values
    groups = reader.get(key.name, str, key.default)
    if groups not in GROUP_ATTRIBUTES:
        reader.error(key.name, f'must be "Class" or "Filter-Id", not "{groups}"')
        groups = key.default
    return GROUP_ATTRIBUTES[groups]


def _scope_attribute(reader: Reader, key: Key, values: Mapping[str, Any]) -> int:
    scope = reader.bounded_int(key.name, key.default, int(key.low or 0), int(key.high or 0))
    if scope == values["role_attribute"]:
        reader.error(key.name, f"must differ from role_attribute ({scope})")
    return scope


RADIUS = Section(
    "directory.radius",
    'directory login over RADIUS (backend = "radius")',
    (
        Key(
            "servers",
            tuple,
            (),
            "one or two servers, IP[:port] (1812), tried in order",
            custom=_servers_key,
        ),
        Key(
            "secret_file",
            Path,
            "",
            "file holding the shared secret, 16+ octets, mode 0600 (required)",
            base=Base.CONFIG,
        ),
        Key("timeout", float, 2.0, "seconds to wait for one reply", low=0.05, high=30),
        Key("retries", int, 1, "retransmissions to one server", low=0, high=5),
        Key(
            "nas_identifier",
            str,
            "meterd",
            "NAS-Identifier sent with every request (1 to 253 octets)",
            check=_nas_identifier,
        ),
        Key(
            "vendor_id",
            int,
            DEFAULT_VENDOR_ID,
            "vendor id of meterd's vendor-specific attributes",
            low=1,
            high=(1 << 24) - 1,
        ),
        Key(
            "role_attribute",
            int,
            1,
            "vendor type of the role attribute (one role per value)",
            low=1,
            high=255,
        ),
        Key(
            "scope_attribute",
            int,
            2,
            "vendor type of the scope attribute (differs from role_attribute)",
            low=1,
            high=255,
            custom=_scope_attribute,
        ),
        Key(
            "group_attribute",
            str,
            "Class",
            "the attribute naming directory groups",
            choices=tuple(GROUP_ATTRIBUTES),
            custom=_group_attribute,
        ),
    ),
)


@record
class RadiusSettings:
    """How meterd asks RADIUS servers.

    Attributes:
        servers: One or two servers, tried in order.
        secret_file: Where the shared secret came from.
        secret: The shared secret (never shown in a repr).
        timeout: Seconds to wait for a reply to one transmission.
        retries: Retransmissions to one server after the first send.
        nas_identifier: The NAS-Identifier sent with every request.
        vendor_id: Vendor id of meterd's vendor-specific attributes.
        role_attribute: Vendor type of the role attribute (one role per value, repeatable).
        scope_attribute: Vendor type of the optional scope attribute.
        group_attribute: ``"class"`` or ``"filter-id"``: which attribute names directory groups.
    """

    servers: tuple[RadiusServer, ...]
    secret_file: Path
    secret: bytes = field(repr=False)
    timeout: float = RADIUS.default("timeout")
    retries: int = RADIUS.default("retries")
    nas_identifier: str = RADIUS.default("nas_identifier")
    vendor_id: int = RADIUS.default("vendor_id")
    role_attribute: int = RADIUS.default("role_attribute")
    scope_attribute: int = RADIUS.default("scope_attribute")
    group_attribute: str = RADIUS.default("group_attribute")


def _read_secret(reader: Reader, values: dict[str, Any], bases: Mapping[Base, Path]) -> None:
    del bases
    secret_file: Path | None = values["secret_file"]
    if secret_file is None:
        # Absent or empty; a value that is wrong is reported as such already.
        if not reader.table.get("secret_file"):
            reader.error("secret_file", "a file holding the shared secret is required")
        values["secret_file"] = Path()
    values["secret"] = b"" if secret_file is None else _secret(reader, secret_file)


#: Reads ``[directory.radius]``: a relative ``secret_file`` is taken from the
#: configuration file's directory, and the secret is read from it at once.
LOADER = Loader(RADIUS, RadiusSettings, _read_secret)


def radius_settings(table: dict[str, Any], config_dir: Path, source: str = "") -> RadiusSettings:
    """Validate a ``[directory.radius]`` table on its own.

    Args:
        table: The parsed table.
        config_dir: Base of a relative ``secret_file``.
        source: The file the table came from, for messages.

    Raises:
        ConfigValidationError: Listing every problem with its key path (``directory.radius.…``).
    """
    errors: list[ConfigError] = []
    settings = LOADER.load(Reader(table, "directory.radius", source, errors), {Base.CONFIG: config_dir})
    if errors:
        raise ConfigValidationError(errors)
    return settings
