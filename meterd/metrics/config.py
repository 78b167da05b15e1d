"""The ``[metrics]`` section of ``meterd.toml``."""

from __future__ import annotations

import ipaddress

from meterd.configspec import Key, Loader, Section
from meterd.record import record


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


@record
class MetricsConfig:
    """Where the metrics endpoint listens.

    Attributes:
        enabled: Serve metrics at all.
        listen: The IP address to bind; loopback by default, because the
            scrape shows how the meter is used and is not authenticated.
        port: TCP port (9102 by default).
    """

    enabled: bool = METRICS.default("enabled")
    listen: str = METRICS.default("listen")
    port: int = METRICS.default("port")


#: Reads ``[metrics]`` (no setting is a path).
LOADER = Loader(METRICS, MetricsConfig)
