"""How the audit step names what it records: event types, principal kinds, who keeps a full log.

Pure mappings over the policy in force; nothing here writes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from meterd.policy.compile import CompiledPolicy
from meterd.policy.grants import PrincipalKind
from meterd.policy.model import ANONYMOUS
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.seclog import EventType
from meterd.seclog.events import SYSTEM_PRINCIPAL, DetailValue
from meterd.seclog.events import PrincipalKind as LoggedKind

log = logging.getLogger(__name__)

Detail = Mapping[str, DetailValue]

#: The event an allowed use of a permission is recorded as, unless the channel says otherwise.
ALLOW_EVENTS: dict[Permission, EventType] = {
    Permission.PEAK_DEMAND_RESET: EventType.DEMAND_RESET,
    Permission.MASTER_RESET: EventType.MASTER_RESET,
    Permission.TEST_MODE_TOGGLE: EventType.VALUE_FORCING,
    Permission.TIME_SYNC: EventType.TIME_CHANGE,
    Permission.FIRMWARE_MANAGEMENT: EventType.FIRMWARE_CHANGE,
    Permission.FRONT_PANEL_RESTART: EventType.REBOOT,
    Permission.COMM_CONFIG: EventType.CONFIG_CHANGE,
    Permission.DSS_CONFIG: EventType.CONFIG_CHANGE,
    Permission.ION_MODULE_CONFIG: EventType.CONFIG_CHANGE,
    Permission.FRONT_PANEL_CONFIG: EventType.CONFIG_CHANGE,
    Permission.CERTIFICATE_MANAGEMENT: EventType.CONFIG_CHANGE,
    Permission.USER_MANAGEMENT: EventType.CONFIG_CHANGE,
    Permission.PASSWORD_SELF_MANAGEMENT: EventType.PASSWORD_CHANGE,
    Permission.SECURITY_LOGS_ACCESS: EventType.AUDIT_LOG_ACCESS,
}

WHY_LIMIT = 200
#: A record's size as far as the room for unauthenticated records is concerned (most are 300-550 bytes).
RECORD_ESTIMATE = 600
#: Where the security log lives in the scope tree (who may read it there keeps a full log serviceable).
LOG_RESOURCE = "/files/security-log"
SESSION_EVENTS = frozenset({EventType.LOGIN_SUCCESS, EventType.LOGOUT_MANUAL, EventType.LOGOUT_TIMEOUT})


def allow_event(permission: Permission) -> EventType:
    """The event an allowed use of ``permission`` is recorded as by default."""
    return ALLOW_EVENTS.get(permission, EventType.ACCESS_DECISION)


def principal_kind(compiled: CompiledPolicy, name: str) -> PrincipalKind:
    """What sort of principal ``name`` is under ``compiled`` (unknown names count as users)."""
    if name == ANONYMOUS:
        return PrincipalKind.ANONYMOUS
    if name in compiled.policy.applications:
        return PrincipalKind.APPLICATION
    return PrincipalKind.USER


def logged_kind(compiled: CompiledPolicy, name: str) -> LoggedKind:
    """The principal kind a record states: ``system`` for meterd itself, ``unknown`` for no principal."""
    if name == SYSTEM_PRINCIPAL:
        return LoggedKind.SYSTEM
    policy = compiled.policy
    if name != ANONYMOUS and not (
        name in policy.users or name in policy.applications or name in policy.directory_principals
    ):
        return LoggedKind.UNKNOWN
    return LoggedKind(principal_kind(compiled, name).value)


def is_unauthenticated(kind: LoggedKind, event: EventType | None) -> bool:
    """True for a record about a party that has not authenticated (see :mod:`meterd.seclog.classes`)."""
    return (
        kind is LoggedKind.ANONYMOUS
        or kind is LoggedKind.UNKNOWN
        or event is EventType.LOGIN_FAILURE
        or event is EventType.ACCOUNT_LOCKED
    )


def keeps_log(compiled: CompiledPolicy, principal: str, channel: Channel) -> bool:
    """Whether ``principal`` may read the security log on ``channel`` (side-effect free)."""
    try:
        return compiled.verdict(principal, Permission.SECURITY_LOGS_ACCESS, LOG_RESOURCE, channel).allowed
    except Exception:  # deciding who may use the reserve fails closed
        log.exception("evaluator failed while deciding the log reserve")
        return False
