"""The ``[security_log]`` section of ``meterd.toml`` and its ``[security_log.forward]`` table.

Declared once (:data:`SECURITY_LOG`, :data:`FORWARD`) beside the log's own
settings (:class:`~meterd.seclog.config.LogConfig`): the log's limits take
their defaults from ``LogConfig`` (whose fields the log is also built with
directly, configuration or not), which checks their combination again when
built.  A leaf like :mod:`meterd.config`: it loads neither the log nor its C
sealer (the package imports those on first use).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from meterd.configspec import Base, Key, Loader, Section
from meterd.record import record
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


@record
class ForwardSettings:
    """The off-meter copy: an RFC 5424 collector over TCP, or TLS (RFC 5425).

    Attributes:
        enabled: Always true once loaded (a disabled forward is no settings at all).
        host: Collector address.
        port: Collector port.
        tls: Use TLS.
        ca: CA certificate that signed the collector's certificate (TLS only).
        cert: Client certificate, when the collector asks for one.
        key: The client certificate's private key.
        server_hostname: Name expected in the collector's certificate (default: host).

    The three files are only read: relative paths are taken from the
    configuration file's directory.
    """

    enabled: bool
    host: str
    port: int
    tls: bool
    ca: Path | None
    cert: Path | None
    key: Path | None
    server_hostname: str | None


@record
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


def _forward_checks(reader: Reader, values: dict[str, Any], bases: Mapping[Base, Path]) -> None:
    del bases
    if not values["host"]:
        reader.error("host", "a collector host is required")
    if values["tls"] and values["ca"] is None:
        reader.error("ca", "TLS needs the CA certificate that signed the collector's certificate")
    if values["tls"] and "port" not in reader.table:
        values["port"] = 6514
    values["server_hostname"] = values["server_hostname"] or None


#: Reads ``[security_log.forward]`` (present and enabled: see :func:`_limits_and_forward`).
FORWARD_LOADER = Loader(FORWARD, ForwardSettings, _forward_checks)


def _limits_and_forward(reader: Reader, values: dict[str, Any], bases: Mapping[Base, Path]) -> None:
    # Every key but the directory is a limit of the log itself, checked together by LogConfig.
    limits = {key.name: values.pop(key.name) for key in SECURITY_LOG.keys if key.name != "directory"}
    limits["full_policy"] = FullPolicy(limits["full_policy"])
    limits["append_timeout"] = float(limits["append_timeout"])
    try:
        values["config"] = LogConfig(**limits)
    except ValueError as e:
        reader.error(None, str(e))
        values["config"] = LogConfig()
    # An absent or empty table, or one with enabled = false, forwards nothing.
    forward = reader.sub("forward")
    enabled = bool(forward.table) and forward.table.get("enabled", True) is not False
    values["forward"] = FORWARD_LOADER.load(forward, bases) if enabled else None


#: Reads ``[security_log]`` (always present: an absent table takes every default).
LOADER = Loader(SECURITY_LOG, SecurityLogSettings, _limits_and_forward)
