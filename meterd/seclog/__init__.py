"""The security log: append-only, hash-chained, forward-sealed, durable, gated for reading.

Public surface:
    * :class:`SecurityLog` — ``init``, ``open``, ``append``/``append_async``,
      ``append_decision_async`` (the guard's call),
      ``read`` (gated by a ``security_logs_access`` decision), ``checkpoint``, ``close``.
    * :func:`verify` — check a log directory or an exported copy.
    * :class:`Forwarder` — RFC 5424 store-and-forward to a syslog collector.

The log, the forwarder and the verifier are imported on first use, so the
settings (:mod:`meterd.seclog.config`, read with the daemon's configuration)
and the event types load without the store and its C sealer, and a daemon
that is never asked to check its log never loads the verifier.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
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

if TYPE_CHECKING:
    from meterd.seclog.forwarder import CollectorConfig, Forwarder
    from meterd.seclog.log import SecurityLog
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

_LAZY = {
    "CollectorConfig": "meterd.seclog.forwarder",
    "Forwarder": "meterd.seclog.forwarder",
    "SecurityLog": "meterd.seclog.log",
    "Finding": "meterd.seclog.verify",
    "Problem": "meterd.seclog.verify",
    "VerifyReport": "meterd.seclog.verify",
    "load_anchor": "meterd.seclog.verify",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


class _Package(types.ModuleType):
    """This package, whose ``verify`` is always the function, loaded on first use.

    Importing the submodule ``meterd.seclog.verify`` sets the package's
    attribute ``verify`` to that module; here that assignment is ignored, so
    ``from meterd.seclog import verify`` gives the function whoever imported
    the submodule first.
    """

    @property
    def verify(self) -> Callable[..., VerifyReport]:
        """:func:`meterd.seclog.verify.verify`."""
        return importlib.import_module("meterd.seclog.verify").verify  # type: ignore[no-any-return]

    @verify.setter
    def verify(self, _submodule: object) -> None:
        pass


sys.modules[__name__].__class__ = _Package
