"""A collector that reads the security log's state at scrape time.

Pulling instead of pushing keeps the log free of any metrics code and costs
nothing between scrapes: the head seq, the bytes used and the forwarder's
cursor are plain attribute reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class LogState(Protocol):
    """What the collector reads of a :class:`~meterd.seclog.SecurityLog`."""

    @property
    def head_seq(self) -> int:
        """Seq of the last durable record."""

    @property
    def usage_bytes(self) -> int:
        """Bytes used by all segments."""

    @property
    def fill_ratio(self) -> float:
        """Used fraction of the capacity."""

    @property
    def failed(self) -> bool:
        """True once a write failed."""

    @property
    def full(self) -> bool:
        """True while appends are refused for capacity."""

    @property
    def warning_level(self) -> int:
        """The highest fill warning (percent) reached; 0 below the first."""

    @property
    def unauthenticated_bytes(self) -> int:
        """Bytes held by records about unauthenticated parties."""


class ForwarderState(Protocol):
    """What the collector reads of a :class:`~meterd.seclog.forwarder.Forwarder`."""

    @property
    def cursor(self) -> int:
        """Seq of the last record the collector confirmed."""


class SecurityLogCollector(Collector):
    """Reports one security log (and its forwarder, if any) on every scrape.

    Args:
        log: The open log.
        forwarder: Its forwarder, or None when the log is not forwarded
            (the backlog metric is then absent rather than a misleading 0).
    """

    def __init__(self, log: LogState, forwarder: ForwarderState | None = None) -> None:
        self._log = log
        self._forwarder = forwarder
        # Counted from this process's start, so the counter means "appends since meterd started".
        self._first_seq = log.head_seq

    def collect(self) -> Iterable[Metric]:
        """Yield the log's metrics (called by the registry on each scrape)."""
        head = self._log.head_seq
        yield CounterMetricFamily(
            "meterd_seclog_records",
            "Records appended to the security log.",
            value=max(0, head - self._first_seq),
        )
        yield GaugeMetricFamily(
            "meterd_seclog_usage_bytes",
            "Bytes used by the security log's segments.",
            value=self._log.usage_bytes,
        )
        yield GaugeMetricFamily(
            "meterd_seclog_fill_ratio",
            "Used fraction of the security log's capacity (0 to 1).",
            value=self._log.fill_ratio,
        )
        yield GaugeMetricFamily(
            "meterd_seclog_failed",
            "1 once a security-log write failed (every append is then refused).",
            value=1 if self._log.failed else 0,
        )
        yield GaugeMetricFamily(
            "meterd_seclog_fill_warning_percent",
            "The highest configured fill warning level the security log has reached (0: none).",
            value=self._log.warning_level,
        )
        yield GaugeMetricFamily(
            "meterd_seclog_full",
            "1 while the security log refuses appends for capacity (recorded actions are then refused).",
            value=1 if self._log.full else 0,
        )
        yield GaugeMetricFamily(
            "meterd_seclog_unauthenticated_bytes",
            "Bytes of the security log held by records about unauthenticated parties.",
            value=self._log.unauthenticated_bytes,
        )
        if self._forwarder is not None:
            yield GaugeMetricFamily(
                "meterd_seclog_forward_backlog_records",
                "Durable records the syslog collector has not yet confirmed.",
                value=max(0, head - self._forwarder.cursor),
            )
