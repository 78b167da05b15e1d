"""Prometheus metrics: what meterd decides, who fails to log in, how the security log keeps up.

Public surface:
    * :class:`MetricsConfig` and :data:`LOADER` — the ``[metrics]`` section of ``meterd.toml``.
    * :class:`MeterdMetrics` — every metric, on its own registry; it is the
      guard's :class:`~meterd.guard.observer.GuardObserver`.
    * :class:`MetricsServer` — serves one registry over HTTP from asyncio.

No label value ever names a user, an address or a register: every label
takes its values from a fixed, closed set (channels, permissions, outcomes,
Modbus function names, policy-load results).

The registry and the endpoint are imported on first use, so reading the
daemon's configuration (which needs :data:`LOADER`) does not load
prometheus_client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from meterd.metrics.config import LOADER, MetricsConfig

if TYPE_CHECKING:
    from meterd.metrics.endpoint import MetricsServer
    from meterd.metrics.registry import MeterdMetrics

__all__ = ["LOADER", "MeterdMetrics", "MetricsConfig", "MetricsServer"]

_LAZY = {"MetricsServer": "meterd.metrics.endpoint", "MeterdMetrics": "meterd.metrics.registry"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
