"""The security log: append-only, hash-chained, forward-sealed, durable, gated for reading.

Public surface:
    * :class:`SecurityLog` — ``init``, ``open``, ``append``/``append_async``,
      ``append_decision_async`` (the guard's call),
      ``read`` (gated by a ``security_logs_access`` decision), ``checkpoint``, ``close``.
    * :func:`verify` — check a log directory or an exported copy.
    * :class:`Forwarder` — RFC 5424 store-and-forward to a syslog collector.

The log and the forwarder are imported on first use, so the
settings (:mod:`meterd.seclog.config`, read with the daemon's configuration)
and the event types load without the store and its C sealer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from meterd.seclog.config import FullPolicy, LogConfig
from meterd.seclog.errors import (
    LogAccessError,
    LogCorruptError,
    LogFullError,
    LogKeyError,
    LogUnavailableError,
    RecordRejectedError,
)
from meterd.seclog.events import EventType, PrincipalKind, Record
from meterd.seclog.reader import Query, read_records

# Bound here, not lazily: importing the submodule ``verify`` would otherwise leave the
# package's ``verify`` naming the module rather than the function.
from meterd.seclog.verify import Finding, Problem, VerifyReport, load_anchor, verify

if TYPE_CHECKING:
    from meterd.seclog.forwarder import CollectorConfig, Forwarder
    from meterd.seclog.log import SecurityLog

__all__ = [
    "CollectorConfig",
    "EventType",
    "Finding",
    "Forwarder",
    "FullPolicy",
    "LogAccessError",
    "LogConfig",
    "LogCorruptError",
    "LogFullError",
    "LogKeyError",
    "LogUnavailableError",
    "PrincipalKind",
    "Problem",
    "Query",
    "Record",
    "RecordRejectedError",
    "SecurityLog",
    "VerifyReport",
    "load_anchor",
    "read_records",
    "verify",
]

_LAZY = {
    "CollectorConfig": "meterd.seclog.forwarder",
    "Forwarder": "meterd.seclog.forwarder",
    "SecurityLog": "meterd.seclog.log",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
