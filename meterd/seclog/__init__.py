"""The security log: append-only, hash-chained, forward-sealed, durable, gated for reading.

Public surface:
    * :class:`SecurityLog` — ``init``, ``open``, ``append``/``append_async``,
      ``append_decision_async`` (the guard's call),
      ``read`` (gated by a ``security_logs_access`` decision), ``checkpoint``, ``close``.
    * :func:`verify` — check a log directory or an exported copy.
    * :class:`Forwarder` — RFC 5424 store-and-forward to a syslog collector.
"""

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
from meterd.seclog.forwarder import CollectorConfig, Forwarder
from meterd.seclog.log import SecurityLog
from meterd.seclog.reader import Query, read_records
from meterd.seclog.verify import Finding, Problem, VerifyReport, load_anchor, verify

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
