"""The security log: append-only, hash-chained, forward-sealed, durable, gated for reading.

Public surface:
    * :class:`SecurityLog` — ``init``, ``open``, ``append``/``append_async``,
      ``append_decision_async`` (the guard's call),
      ``read`` (gated by a ``security_logs_access`` decision), ``checkpoint``, ``close``.
    * :func:`meterd.seclog.verify.verify` — check a log directory or an exported copy.
    * :class:`Forwarder` — RFC 5424 store-and-forward to a syslog collector.

The write pipeline, each fact with one owner:

1. :mod:`~meterd.seclog.log` validates and encodes a record's fields
   (:mod:`~meterd.seclog.entry`) in the appender's thread.
2. :mod:`~meterd.seclog.writer` collects appenders into groups (group commit)
   and hands each group to the store; it reaches the native part only
   through the store.  Async appenders' futures are settled by their own
   loop (:mod:`~meterd.seclog.waiters`).
3. :mod:`~meterd.seclog.store` owns what goes into the log: capacity (drops,
   fill warnings, the auditor's reserve), the log's own records
   (checkpoints), and rotation, which it submits only once everything
   before is durable (recovery reads only the head segment's tail,
   :mod:`~meterd.seclog.recovery`).  Frame sizes come from the C sealer's
   formula (:func:`~meterd.seclog.sealer.frames_size`).
4. :mod:`~meterd.seclog.syncer` wraps ``native/meterd_sync.c``, which numbers
   the records (the store reads the next seq from it): two native workers
   seal (``native/meterd_seal.c``, holding the chain head and the evolving
   key, erased as it evolves) and write each group, and make what was
   written durable with one ``fdatasync`` shared by every group written
   meanwhile, then wake the appenders; a key thread stores the key of the
   next record in the key file, whose slot format the C code alone defines
   (:mod:`~meterd.seclog.keys`), never ahead of the durable log.
5. Reading back: :mod:`~meterd.seclog.reader`; verification is independent of
   all of the above (Python ``hashlib``/``hmac`` only): a lean pass
   (:mod:`~meterd.seclog.scan`, in parallel parts with
   :mod:`~meterd.seclog.parts`), and the reference verifier
   (:mod:`~meterd.seclog.verify`) that names any problem.

The compiled part is imported only by :mod:`~meterd.seclog.native` (the test
suite runs a build with storage fault injection; the daemon's has none).

Everything is imported on first use, so the settings
(:mod:`meterd.seclog.config`, and :mod:`meterd.seclog.settings`, read with the
daemon's configuration) load without the store and its C sealer, and
without the reader and the verifiers: a running meter checks its log only
when an auditor asks.  The verifier itself is
:func:`meterd.seclog.verify.verify`, never a name of this package (importing
the submodule would rebind the name to the module).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    from meterd.seclog.report import Finding, Problem, VerifyReport
    from meterd.seclog.verify import load_anchor

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
]

_MODULES = {
    "meterd.seclog.config": ("FullPolicy", "LogConfig"),
    "meterd.seclog.errors": (
        "LogAccessError",
        "LogCorruptError",
        "LogFullError",
        "LogKeyError",
        "LogUnavailableError",
        "RecordRejectedError",
    ),
    "meterd.seclog.events": ("EventType", "PrincipalKind", "Record"),
    "meterd.seclog.forwarder": ("CollectorConfig", "Forwarder"),
    "meterd.seclog.log": ("SecurityLog",),
    "meterd.seclog.reader": ("Query", "read_records"),
    "meterd.seclog.report": ("Finding", "Problem", "VerifyReport"),
    "meterd.seclog.verify": ("load_anchor",),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
