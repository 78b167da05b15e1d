"""The vocabulary every channel speaks to the guard: channels, requests, decisions.

A channel translates wire activity into a :class:`Request`; the guard answers
with a :class:`Decision`.  Both are immutable values.
"""

from __future__ import annotations

import enum

from meterd.policy.permissions import Permission
from meterd.record import record


class Channel(enum.Enum):
    """Where a request came from.  The value is the name used in files and logs.

    The order is part of the compiled-table format (the channel index is the
    position in this enumeration); append, never reorder.

    Attributes:
        index: The channel's stable index in compiled tables.

    """

    index: int

    SSH = "ssh"
    SFTP = "sftp"
    SERIAL = "serial"
    PANEL = "panel"
    MODBUS = "modbus"
    LOCAL = "local"

    def __init__(self, name: str) -> None:
        # Members are created in definition order, so the count so far is the index.
        self.index = len(type(self)._member_names_)

    __hash__ = object.__hash__


class Outcome(enum.Enum):
    """The result of a decision or an action."""

    ALLOW = "allow"
    DENY = "deny"
    ERROR = "error"

    # As Channel and Permission: an identity hash, so counting outcomes runs no Python code.
    __hash__ = object.__hash__


class DenyReason(enum.Enum):
    """Why the permission core refused a request.  Values are stable codes."""

    UNKNOWN_PRINCIPAL = "unknown_principal"
    DISABLED = "disabled"
    NOT_GRANTED = "not_granted"
    OUT_OF_SCOPE = "out_of_scope"
    CHANNEL_CAP = "channel_cap"
    BAD_REQUEST = "bad_request"
    EVALUATOR_ERROR = "evaluator_error"
    LOCKOUT_PERIOD = "lockout_period"
    DUAL_CONTROL = "dual_control"
    LOG_UNAVAILABLE = "log_unavailable"
    SESSION_CLOSED = "session_closed"
    ROLE_LIMIT = "role_limit"


@record
class Request:
    """One thing a principal wants to do.

    Attributes:
        principal: User or application name, or ``"anonymous"``.
        permission: The permission the action needs.
        resource: Meter resource path, e.g. ``/files/data/log1.csv``; ``/`` is all of the meter.
        channel: Where the request came from.
        source: Peer address or device, for the log only.

    """

    principal: str
    permission: Permission
    resource: str = "/"
    channel: Channel = Channel.LOCAL
    source: str = ""


@record
class Decision:
    """The answer to a :class:`Request`.

    Attributes:
        request: What was asked.
        outcome: ``ALLOW`` or ``DENY`` (``ERROR`` when deciding failed; it denies too).
        reason: Machine-readable cause of a refusal; ``None`` on allow.
        detail: Human-readable explanation, safe to show the requester.

    """

    request: Request
    outcome: Outcome
    reason: DenyReason | None = None
    detail: str = ""

    @property
    def allowed(self) -> bool:
        """True only for an explicit allow; errors and denials are both refusals."""
        return self.outcome is Outcome.ALLOW
