"""What a security-log record says: event types, principal kinds and the record value.

Event types follow IEEE 1686-2013 clauses 5.2.4 (security events to log) and
5.3.3 (audit trail); their values are the stable names written in the log, so
they are never renamed.  ``log_*`` types are written by the log itself.
"""

from __future__ import annotations

import enum
from dataclasses import field
from types import MappingProxyType
from typing import TypeAlias

from meterd.policy.model import SYSTEM
from meterd.policy.request import Channel, Outcome
from meterd.record import record

#: A detail value: small scalars only, so records stay flat and greppable.
DetailValue: TypeAlias = str | int | bool | None


class EventType(enum.Enum):
    """The kind of event a record reports.  The value is the name in the log."""

    LOGIN_SUCCESS = "login_success"
    LOGIN_FAILURE = "login_failure"
    LOGOUT_MANUAL = "logout_manual"
    LOGOUT_TIMEOUT = "logout_timeout"
    ACCOUNT_LOCKED = "account_locked"
    VALUE_FORCING = "value_forcing"
    CONFIG_ACCESS = "config_access"
    CONFIG_CHANGE = "config_change"
    FIRMWARE_CHANGE = "firmware_change"
    PASSWORD_CHANGE = "password_change"  # noqa: S105 - an event name, not a password
    PASSWORD_DELETE = "password_delete"  # noqa: S105 - an event name, not a password
    AUDIT_LOG_ACCESS = "audit_log_access"
    TIME_CHANGE = "time_change"
    ALARM = "alarm"
    REBOOT = "reboot"
    POLICY_CHANGE = "policy_change"
    PERMISSION_DENIED = "permission_denied"
    DEMAND_RESET = "demand_reset"
    MASTER_RESET = "master_reset"
    #: Any other access decision the guard records (every decision is logged).
    ACCESS_DECISION = "access_decision"
    LOG_INIT = "log_init"
    LOG_CHECKPOINT = "log_checkpoint"
    LOG_RECOVERED = "log_recovered"
    LOG_CAPACITY = "log_capacity"
    LOG_SEGMENT_DROPPED = "log_segment_dropped"


class PrincipalKind(enum.Enum):
    """What kind of party a record's principal is."""

    USER = "user"
    APPLICATION = "application"
    ANONYMOUS = "anonymous"
    #: The daemon or the log itself.
    SYSTEM = "system"
    #: A name that is no principal of the policy in force (a failed login of an unknown user).
    UNKNOWN = "unknown"


#: The principal name of the log's own records.
SYSTEM_PRINCIPAL = SYSTEM

BY_EVENT_NAME: dict[str, EventType] = {e.value: e for e in EventType}
BY_CHANNEL_NAME: dict[str, Channel] = {c.value: c for c in Channel}
BY_OUTCOME_NAME: dict[str, Outcome] = {o.value: o for o in Outcome}
BY_KIND_NAME: dict[str, PrincipalKind] = {k.value: k for k in PrincipalKind}


def _empty_detail() -> MappingProxyType[str, DetailValue]:
    return MappingProxyType({})


@record
class Record:
    """One sealed entry of the security log, as read back.

    Attributes:
        seq: Sequence number, 1 for the first record, +1 for each next one.
        time: UTC time the log sequenced the record, RFC 3339 with microseconds
            (``2026-01-31T12:00:00.123456Z``).
        event: What happened.
        principal: User or application name, ``anonymous``, or ``meterd``.
        principal_kind: Which of those it is.
        channel: Where the request came from (``local`` for the daemon itself).
        source: Peer address or device, or empty.
        permission: Permission identifier concerned, or empty.
        resource: Meter resource path concerned, or empty.
        outcome: ``allow``, ``deny`` or ``error``.
        detail: Small flat mapping of extra facts; never secrets.
        prev: Hex SHA-256 of the previous record's body (the chain link).
        digest: Hex SHA-256 of this record's body.
        mac: Hex HMAC-SHA-256 of ``digest`` under this record's sealing key.
    """

    seq: int
    time: str
    event: EventType
    principal: str
    principal_kind: PrincipalKind
    channel: Channel
    source: str
    permission: str
    resource: str
    outcome: Outcome
    detail: MappingProxyType[str, DetailValue] = field(default_factory=_empty_detail)
    prev: str = ""
    digest: str = ""
    mac: str = ""

    def to_json(self) -> dict[str, object]:
        """Return the record as a plain JSON-ready mapping (for ``--json`` output)."""
        return {
            "seq": self.seq,
            "time": self.time,
            "event": self.event.value,
            "principal": self.principal,
            "principal_kind": self.principal_kind.value,
            "channel": self.channel.value,
            "source": self.source,
            "permission": self.permission,
            "resource": self.resource,
            "outcome": self.outcome.value,
            "detail": dict(self.detail),
            "digest": self.digest,
        }
