"""The ``[security_log]`` section of ``meterd.toml`` and its ``[security_log.forward]`` table.

Declared once (:data:`SECURITY_LOG`, :data:`FORWARD`) beside the log's own
settings (:class:`~meterd.seclog.config.LogConfig`): the log's limits take
their defaults from ``LogConfig``, which checks their combination again when
built.  A leaf like :mod:`meterd.config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterd.configspec import Base, Key, Section
from meterd.seclog.config import FullPolicy, LogConfig
from meterd.tomlreader import Reader

_LOG = LogConfig()


def _percentages(levels: list[Any]) -> tuple[str, str] | None:
    if all(isinstance(level, int) and not isinstance(level, bool) for level in levels):
        return None
    return "must be a list of whole percentages", "for example [80, 85, 90, 95, 98]"


SECURITY_LOG = Section(
    "security_log",
    "the security log: where it lives, its size and what it does when full",
    (
        Key("directory", Path, "security-log", "the log's directory", base=Base.STATE),
        Key("segment_bytes", int, _LOG.segment_bytes, "size a segment is closed at", low=4096, high=1 << 30),
        Key("capacity_bytes", int, _LOG.capacity_bytes, "most the log may occupy", low=8192, high=1 << 40),
        Key(
            "full_policy",
            str,
            _LOG.full_policy.value,
            "what the log does at capacity",
            choices=tuple(p.value for p in FullPolicy),
        ),
        Key(
            "checkpoint_interval",
            int,
            _LOG.checkpoint_interval,
            "records between checkpoint records",
            low=1,
            high=1_000_000,
        ),
        Key(
            "append_timeout",
            int,
            int(_LOG.append_timeout),
            "seconds an append waits for stable storage",
            low=1,
            high=600,
        ),
        Key("append_only_attr", bool, _LOG.append_only_attr, "set the append-only attribute on segments"),
        Key(
            "fill_warnings",
            list,
            _LOG.fill_warnings,
            "fill levels (percent) that write a warning",
            check=_percentages,
        ),
        Key(
            "unauthenticated_share",
            int,
            _LOG.unauthenticated_share,
            "percent of capacity records about unauthenticated parties may hold",
            low=1,
            high=50,
        ),
        Key(
            "unauthenticated_records",
            int,
            _LOG.unauthenticated_records,
            "refusals of unauthenticated parties recorded one by one, per source and interval",
            low=1,
            high=100_000,
        ),
        Key(
            "unauthenticated_records_total",
            int,
            _LOG.unauthenticated_records_total,
            "the same over all sources",
            low=1,
            high=100_000,
        ),
        Key(
            "unauthenticated_interval",
            float,
            _LOG.unauthenticated_interval,
            "seconds over which those budgets refill",
            low=1,
            high=86_400,
        ),
    ),
    tables=("forward",),
)


FORWARD = Section(
    "security_log.forward",
    "the off-meter copy: an RFC 5424 collector over TCP, or TLS (RFC 5425)",
    (
        Key("enabled", bool, True, "forward at all"),
        Key("host", str, "", "collector address (required)"),
        Key("port", int, 514, "collector port (6514 by default with TLS)", low=1, high=65535),
        Key("tls", bool, False, "use TLS"),
        Key("ca", Path, "", "CA that signed the collector's certificate (TLS: required)", base=Base.CONFIG),
        Key("cert", Path, "", "client certificate, if the collector asks for one", base=Base.CONFIG),
        Key("key", Path, "", "the client certificate's private key", base=Base.CONFIG),
        Key("server_hostname", str, "", "name expected in the collector's certificate (default: host)"),
    ),
)


@dataclass(frozen=True, slots=True)
class ForwardSettings:
    """The off-meter copy: an RFC 5424 collector over TCP, or TLS (RFC 5425).

    Attributes:
        host: Collector address.
        port: Collector port.
        tls: Use TLS.
        ca: CA certificate that signed the collector's certificate (TLS only).
        cert: Client certificate, when the collector asks for one.
        key: The client certificate's private key.

    The three files are only read: relative paths are taken from the
    configuration file's directory.
        server_hostname: Name expected in the collector's certificate (default: host).
    """

    host: str
    port: int
    tls: bool
    ca: Path | None
    cert: Path | None
    key: Path | None
    server_hostname: str | None


@dataclass(frozen=True, slots=True)
class SecurityLogSettings:
    """Where the security log lives and how it behaves.

    Attributes:
        directory: The log directory (below the state directory unless absolute).
        config: Segment size, capacity, full policy, checkpoint interval.
        forward: The off-meter copy, or None.
    """

    directory: Path
    config: LogConfig
    forward: ForwardSettings | None = None


def load_forward(reader: Reader, bases: Mapping[Base, Path]) -> ForwardSettings | None:
    """Read ``[security_log.forward]``; None if absent or ``enabled = false``."""
    if not reader.table or reader.table.get("enabled", True) is False:
        return None
    values = FORWARD.read(reader, bases)
    if not values["host"]:
        reader.error("host", "a collector host is required")
    if values["tls"] and values["ca"] is None:
        reader.error("ca", "TLS needs the CA certificate that signed the collector's certificate")
    tls_default = values["tls"] and "port" not in reader.table
    return ForwardSettings(
        host=values["host"],
        port=6514 if tls_default else values["port"],
        tls=values["tls"],
        ca=values["ca"],
        cert=values["cert"],
        key=values["key"],
        server_hostname=values["server_hostname"] or None,
    )


def load_security_log(reader: Reader, bases: Mapping[Base, Path]) -> SecurityLogSettings:
    """Read ``[security_log]`` (always present: an absent table takes every default)."""
    values = SECURITY_LOG.read(reader, bases)
    try:
        config = LogConfig(
            segment_bytes=values["segment_bytes"],
            capacity_bytes=values["capacity_bytes"],
            full_policy=FullPolicy(values["full_policy"]),
            checkpoint_interval=values["checkpoint_interval"],
            append_timeout=float(values["append_timeout"]),
            append_only_attr=values["append_only_attr"],
            fill_warnings=values["fill_warnings"],
            unauthenticated_share=values["unauthenticated_share"],
            unauthenticated_records=values["unauthenticated_records"],
            unauthenticated_records_total=values["unauthenticated_records_total"],
            unauthenticated_interval=values["unauthenticated_interval"],
        )
    except ValueError as e:
        reader.error(None, str(e))
        config = LogConfig()
    return SecurityLogSettings(values["directory"], config, load_forward(reader.sub("forward"), bases))
