"""The ``[metrics]`` section of ``meterd.toml``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from meterd.tomlreader import Reader

_KEYS = ("enabled", "listen", "port")


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


def load(reader: Reader, config_dir: Path) -> MetricsConfig:
    """Read the ``[metrics]`` table; problems are recorded on ``reader``.

    Args:
        reader: The section's reader; unknown keys and bad values become
            errors with their key path.
        config_dir: Directory of the configuration file (no metrics setting is
            a path, and the endpoint writes no file).

    Returns:
        The settings, with defaults where a value was missing or invalid.
    """
    del config_dir  # the common loader signature; nothing here is a path
    reader.check_keys(_KEYS)
    defaults = MetricsConfig()
    listen = reader.get("listen", str, defaults.listen)
    try:
        ipaddress.ip_address(listen)
    except ValueError:
        reader.error("listen", f'must be an IP address, not "{listen}"')
        listen = defaults.listen
    return MetricsConfig(
        enabled=reader.get("enabled", bool, defaults.enabled),
        listen=listen,
        port=reader.bounded_int("port", defaults.port, 1, 65535),
    )
