"""The ``[metrics]`` section of ``meterd.toml``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from meterd.configspec import Key, Section
from meterd.tomlreader import Reader


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Where the metrics endpoint listens.

    Attributes:
        enabled: Serve metrics at all.
        listen: The IP address to bind; loopback by default, because the
            scrape shows how the meter is used and is not authenticated.
        port: TCP port (9102 by default).
    """

    enabled: bool = True
    listen: str = "127.0.0.1"
    port: int = 9102


def _ip_address(text: str) -> str | None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return f'must be an IP address, not "{text}"'
    return None


METRICS = Section(
    "metrics",
    "the metrics endpoint (Prometheus text over HTTP)",
    (
        Key("enabled", bool, True, "serve metrics"),
        Key(
            "listen",
            str,
            "127.0.0.1",
            "IP address to bind (the scrape is not authenticated)",
            check=_ip_address,
        ),
        Key("port", int, 9102, "TCP port", low=1, high=65535),
    ),
)


def load(reader: Reader, config_dir: Path) -> MetricsConfig:
    """Read the ``[metrics]`` table (declared in :data:`METRICS`); problems are recorded on ``reader``.

    Args:
        reader: The section's reader; unknown keys and bad values become
            errors with their key path.
        config_dir: Directory of the configuration file (no metrics setting is
            a path, and the endpoint writes no file).

    Returns:
        The settings, with defaults where a value was missing or invalid.
    """
    del config_dir  # the common loader signature; nothing here is a path
    return MetricsConfig(**METRICS.read(reader, {}))
