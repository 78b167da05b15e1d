"""The ``[modbus]`` table of ``meterd.toml``: validated, frozen settings.

Unknown keys are errors with a did-you-mean; every limit is a named, bounded
field.  Problems are collected in the :class:`~meterd.tomlreader.Reader`'s
shared error list (the daemon's loader raises them together); a field with a
problem keeps its default so the rest can still be checked.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from meterd.configspec import Base, Key, Loader, Section
from meterd.record import record
from meterd.tomlreader import Reader


def _unit_ids(reader: Reader, key: Key, values: Mapping[str, Any]) -> tuple[int, ...]:
    del values
    listed = reader.get(key.name, list, list(key.default))
    out: list[int] = []
    for i, value in enumerate(listed):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
            reader.error_item(key.name, i, "must be a unit id between 0 and 255")
        elif value in out:
            reader.error_item(key.name, i, f"unit id {value} is listed twice")
        else:
            out.append(value)
    if not out:
        reader.error(key.name, "must list at least one unit id")
        return tuple(key.default)
    return tuple(out)


def _per_client(reader: Reader, key: Key, values: Mapping[str, Any]) -> int:
    """Read ``max_<what>_per_client``: by default no more than ``max_<what>``, and never more."""
    whole = key.name.removesuffix("_per_client")
    total: int = values[whole]
    per_client = reader.bounded_int(key.name, min(key.default, total), int(key.low or 0), int(key.high or 0))
    if per_client > total:
        reader.error(key.name, f"must not exceed {whole} ({total})")
        per_client = total
    return per_client


def _ip_address(listen: str) -> str | None:
    try:
        ipaddress.ip_address(listen)
    except ValueError:
        return f"{listen!r} is not an IP address"
    return None


def _connections(what: str, total: int, per_client: int, doc: str) -> tuple[Key, Key]:
    return (
        Key(f"max_{what}", int, total, doc, low=1, high=4096),
        Key(
            f"max_{what}_per_client",
            int,
            per_client,
            f"the same from one peer address (at most max_{what})",
            low=1,
            high=4096,
            custom=_per_client,
        ),
    )


TLS = Section(
    "modbus.tls",
    "Modbus/TCP Security (mutual TLS, the role in the client certificate)",
    (
        Key("enabled", bool, False, "serve Modbus/TCP Security"),
        Key("port", int, 8020, "TCP port (0 picks a free one)", low=0, high=65535),
        Key("cert", Path, "", "the meter's certificate chain (PEM; required)", base=Base.CONFIG),
        Key("key", Path, "", "its private key (PEM; required)", base=Base.CONFIG),
        Key("ca", Path, "", "the CA client certificates must chain to (PEM; required)", base=Base.CONFIG),
        *_connections("connections", 32, 8, "TLS sessions, taken once the client certificate is verified"),
        *_connections("handshakes", 8, 2, "TLS handshakes in progress"),
    ),
)


@record
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

    enabled: bool = TLS.default("enabled")
    port: int = TLS.default("port")
    cert: Path | None = TLS.default("cert")
    key: Path | None = TLS.default("key")
    ca: Path | None = TLS.default("ca")
    max_connections: int = TLS.default("max_connections")
    max_connections_per_client: int = TLS.default("max_connections_per_client")
    max_handshakes: int = TLS.default("max_handshakes")
    max_handshakes_per_client: int = TLS.default("max_handshakes_per_client")


MODBUS = Section(
    "modbus",
    "the Modbus channel: plain Modbus TCP (the anonymous principal)",
    (
        Key("enabled", bool, True, "run the channel"),
        Key("plain_tcp", bool, True, "serve plain Modbus TCP"),
        Key("listen", str, "127.0.0.1", "IP address both listeners bind to", check=_ip_address),
        Key("port", int, 5020, "plain Modbus TCP port (0 picks a free one)", low=0, high=65535),
        Key("unit_ids", list, (1,), "unit ids the meter answers to (0 to 255)", custom=_unit_ids),
        *_connections("connections", 32, 8, "open plain Modbus TCP connections"),
        Key(
            "max_requests_per_second",
            int,
            100,
            "sustained requests per peer address on each listener",
            low=1,
            high=100_000,
        ),
        Key("idle_timeout", float, 120.0, "seconds a connection may stay silent", low=0.1, high=86_400),
        Key(
            "frame_timeout",
            float,
            5.0,
            "seconds to finish a frame (or the TLS handshake) once begun",
            low=0.05,
            high=600,
        ),
    ),
    tables=("tls",),
)


@record
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

    enabled: bool = MODBUS.default("enabled")
    plain_tcp: bool = MODBUS.default("plain_tcp")
    listen: str = MODBUS.default("listen")
    port: int = MODBUS.default("port")
    unit_ids: tuple[int, ...] = MODBUS.default("unit_ids")
    max_connections: int = MODBUS.default("max_connections")
    max_connections_per_client: int = MODBUS.default("max_connections_per_client")
    max_requests_per_second: int = MODBUS.default("max_requests_per_second")
    idle_timeout: float = MODBUS.default("idle_timeout")
    frame_timeout: float = MODBUS.default("frame_timeout")
    tls: TlsConfig = field(default_factory=TlsConfig)


def _tls_files(reader: Reader, values: dict[str, Any], bases: Mapping[Base, Path]) -> None:
    del bases
    if values["enabled"]:
        for key in ("cert", "key", "ca"):
            if values[key] is None:
                reader.error(key, "is required when Modbus/TCP Security is enabled")


#: Reads ``[modbus.tls]``: the three files are only read, so relative paths are taken
#: from the configuration file's directory.
TLS_LOADER = Loader(TLS, TlsConfig, _tls_files)


def _tls(reader: Reader, values: dict[str, Any], bases: Mapping[Base, Path]) -> None:
    values["tls"] = TLS_LOADER.load(reader.sub("tls"), bases)


#: Reads ``[modbus]`` and its ``[modbus.tls]`` table.
LOADER = Loader(MODBUS, ModbusConfig, _tls)
