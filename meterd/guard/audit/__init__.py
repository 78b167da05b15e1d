"""The audit step: the only code that turns decisions and events into security-log records.

It maps a decision to its event type (:data:`ALLOW_EVENTS`), counts the
allows a channel asked to aggregate, applies the budget of records about
unauthenticated parties (:mod:`meterd.guard.evidence` is the pure budget;
what is over it is counted and summarised here), accounts for the
unauthenticated records in flight, decides who may use a full log's reserve,
and writes (:mod:`~meterd.guard.audit.writer`); it also serves the log's
state and contents to the guard's read-only verbs
(:mod:`~meterd.guard.audit.log_access`).  It is the only part of the guard
that imports :mod:`meterd.seclog`.
"""

from typing import TYPE_CHECKING

from meterd.guard.audit.events import ALLOW_EVENTS, Detail, allow_event, principal_kind
from meterd.guard.audit.log_access import Audit, LogStatus
from meterd.guard.audit.writer import AggregateKey, aggregate_key
from meterd.seclog import EventType, Query, Record, SecurityLog
from meterd.seclog.events import DetailValue

if TYPE_CHECKING:
    # Annotations only: the verifier and its report load when an auditor asks for a check.
    from meterd.seclog.report import VerifyReport

__all__ = [
    "ALLOW_EVENTS",
    "AggregateKey",
    "Audit",
    "Detail",
    "DetailValue",
    "EventType",
    "LogStatus",
    "Query",
    "Record",
    "SecurityLog",
    "VerifyReport",
    "aggregate_key",
    "allow_event",
    "principal_kind",
]
