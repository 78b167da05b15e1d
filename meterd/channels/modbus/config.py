"""The ``[modbus]`` table of ``meterd.toml``: validated, frozen settings.

Unknown keys are errors with a did-you-mean; every limit is a named, bounded
field.  Problems are collected in the :class:`~meterd.tomlreader.Reader`'s
shared error list (the daemon's loader raises them together); a field with a
problem keeps its default so the rest can still be checked.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from meterd.tomlreader import Reader

_KEYS = (
    "enabled",
    "plain_tcp",
    "listen",
    "port",
    "unit_ids",
    "max_connections",
    "max_connections_per_client",
    "max_requests_per_second",
    "idle_timeout",
    "frame_timeout",
    "tls",
)
_TLS_KEYS = (
    "enabled",
    "port",
    "cert",
    "key",
    "ca",
    "max_connections",
    "max_connections_per_client",
    "max_handshakes",
    "max_handshakes_per_client",
)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """The Modbus/TCP Security listener (mutual TLS, TLS 1.2 or later).

    Attributes:
        enabled: Serve Modbus/TCP Security.
        port: TCP port (802 in production; 0 picks a free port, for tests).
        cert: The meter's server certificate chain (PEM).
        key: Its private key (PEM).
        ca: The CA bundle client certificates must chain to (PEM).
        max_connections: Sessions on this listener: a connection takes one only once its
            handshake has succeeded with a verified client certificate; more are closed
            then.  Its own budget: plain TCP clients and unfinished handshakes never spend it.
        max_connections_per_client: Sessions on this listener from one peer address.
        max_handshakes: TLS handshakes in progress at once, counted from accept, each for
            at most ``frame_timeout``; more connections are closed at accept.
        max_handshakes_per_client: Handshakes in progress at once from one peer address.

    meterd only reads the three files: relative paths are taken from the
    configuration file's directory.
    """

    enabled: bool = False
    port: int = 8020
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    max_connections: int = 32
    max_connections_per_client: int = 8
    max_handshakes: int = 8
    max_handshakes_per_client: int = 2


@dataclass(frozen=True, slots=True)
class ModbusConfig:
    """Settings of the Modbus channel.

    Attributes:
        enabled: Run the channel at all.
        plain_tcp: Serve plain Modbus TCP (clients are the anonymous principal).
        listen: Address both listeners bind to.
        port: Plain Modbus TCP port (502 in production; 0 picks a free port).
        unit_ids: Unit identifiers the meter answers to; others get exception 0B.
        max_connections: Open plain Modbus TCP connections; more are closed at once.
            Modbus/TCP Security has its own (``tls.max_connections``), so anonymous
            clients cannot take the connections authenticated ones need.
        max_connections_per_client: Open plain Modbus TCP connections from one peer address.
        max_requests_per_second: Sustained requests per peer address on each listener
            (counted apart, so anonymous requests never slow a TLS client down); a
            faster client is slowed down (its next request is read later), never
            answered early.
        idle_timeout: Seconds a connection may wait between requests before it is closed.
        frame_timeout: Seconds a client has to finish a frame, or the TLS
            handshake, once it has started sending it (half-open and slow clients).
        tls: The Modbus/TCP Security listener.
    """

    enabled: bool = True
    plain_tcp: bool = True
    listen: str = "127.0.0.1"
    port: int = 5020
    unit_ids: tuple[int, ...] = (1,)
    max_connections: int = 32
    max_connections_per_client: int = 8
    max_requests_per_second: int = 100
    idle_timeout: float = 120.0
    frame_timeout: float = 5.0
    tls: TlsConfig = field(default_factory=TlsConfig)


def _path(reader: Reader, key: str, config_dir: Path) -> Path | None:
    text = reader.get(key, str, "")
    if not text:
        return None
    path = Path(text)
    return path if path.is_absolute() else config_dir / path


def _unit_ids(reader: Reader) -> tuple[int, ...]:
    values = reader.get("unit_ids", list, [1])
    out: list[int] = []
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
            reader.error_item("unit_ids", i, "must be a unit id between 0 and 255")
        elif value in out:
            reader.error_item("unit_ids", i, f"unit id {value} is listed twice")
        else:
            out.append(value)
    if not out:
        reader.error("unit_ids", "must list at least one unit id")
        return (1,)
    return tuple(out)


def _connections(
    reader: Reader, what: str = "connections", defaults: tuple[int, int] = (32, 8)
) -> tuple[int, int]:
    """Read ``max_<what>`` and ``max_<what>_per_client`` of one listener's table."""
    total = reader.bounded_int(f"max_{what}", defaults[0], 1, 4096)
    per_client = reader.bounded_int(f"max_{what}_per_client", min(defaults[1], total), 1, 4096)
    if per_client > total:
        reader.error(f"max_{what}_per_client", f"must not exceed max_{what} ({total})")
        per_client = total
    return total, per_client


def _tls(reader: Reader, config_dir: Path) -> TlsConfig:
    reader.check_keys(_TLS_KEYS)
    enabled = reader.get("enabled", bool, False)
    total, per_client = _connections(reader)
    handshakes, handshakes_per_client = _connections(reader, "handshakes", (8, 2))
    config = TlsConfig(
        enabled=enabled,
        port=reader.bounded_int("port", 8020, 0, 65535),
        cert=_path(reader, "cert", config_dir),
        key=_path(reader, "key", config_dir),
        ca=_path(reader, "ca", config_dir),
        max_connections=total,
        max_connections_per_client=per_client,
        max_handshakes=handshakes,
        max_handshakes_per_client=handshakes_per_client,
    )
    if enabled:
        for key in ("cert", "key", "ca"):
            if getattr(config, key) is None:
                reader.error(key, "is required when Modbus/TCP Security is enabled")
    return config


def load(reader: Reader, config_dir: Path) -> ModbusConfig:
    """Read the ``[modbus]`` table.

    Args:
        reader: The table, with its key path and the shared error list.
        config_dir: Directory of the configuration file, which relative paths
            (certificate, key, CA: files meterd only reads) are resolved against.

    Returns:
        The settings; fields with problems (recorded in ``reader.errors``) keep their defaults.
    """
    reader.check_keys(_KEYS)
    listen = reader.get("listen", str, "127.0.0.1")
    try:
        ipaddress.ip_address(listen)
    except ValueError:
        reader.error("listen", f"{listen!r} is not an IP address")
        listen = "127.0.0.1"
    max_connections, per_client = _connections(reader)
    return ModbusConfig(
        enabled=reader.get("enabled", bool, True),
        plain_tcp=reader.get("plain_tcp", bool, True),
        listen=listen,
        port=reader.bounded_int("port", 5020, 0, 65535),
        unit_ids=_unit_ids(reader),
        max_connections=max_connections,
        max_connections_per_client=per_client,
        max_requests_per_second=reader.bounded_int("max_requests_per_second", 100, 1, 100_000),
        idle_timeout=reader.seconds("idle_timeout", 120.0, 0.1, 86_400.0),
        frame_timeout=reader.seconds("frame_timeout", 5.0, 0.05, 600.0),
        tls=_tls(reader.sub("tls"), config_dir),
    )
