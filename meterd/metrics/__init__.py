"""Prometheus metrics: what meterd decides, who fails to log in, how the security log keeps up.

Public surface:
    * :class:`MetricsConfig` and :func:`load` — the ``[metrics]`` section of ``meterd.toml``.
    * :class:`MeterdMetrics` — every metric, on its own registry; it is the
      guard's :class:`~meterd.guard.observer.GuardObserver`.
    * :class:`MetricsServer` — serves one registry over HTTP from asyncio.

No label value ever names a user, an address or a register: every label
takes its values from a fixed, closed set (channels, permissions, outcomes,
Modbus function names, policy-load results).
"""

from meterd.metrics.config import MetricsConfig, load
from meterd.metrics.endpoint import MetricsServer
from meterd.metrics.registry import MeterdMetrics

__all__ = ["MeterdMetrics", "MetricsConfig", "MetricsServer", "load"]
