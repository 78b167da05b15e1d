"""The front-panel wire protocol: newline-delimited JSON, parsed into typed ops.

I/O-free.  :func:`parse` turns one received line into an op or raises
:class:`PanelProtocolError` (the single place untrusted panel input becomes a
meterd error); :func:`encode` turns an answer into one line.

Requests (every one may carry ``"id"``, an integer or short string echoed in
its answers so a panel can match them)::

    {"op":"login","user":"u","pin":"1234"}
    {"op":"logout"}                                  every session of this connection
    {"op":"logout","session":"<token>"}
    {"op":"action","session":"<token>","action":"demand_reset"}
    {"op":"action","session":"<token>","action":"restart"}
    {"op":"action","session":"<token>","action":"master_reset"}
    {"op":"action","session":"<token>","action":"test_mode","on":true}
    {"op":"action","session":"<token>","action":"config","settings":{"ct_primary_a":200}}
    {"op":"approve","session":"<token>","approval":7}
    {"op":"reject","session":"<token>","approval":7}
    {"op":"pending","session":"<token>"}

Answers are one line each: ``{"ok":true,...}`` or ``{"ok":false,"error":CODE,...}``;
a refusal by the guard is ``{"ok":false,"error":"denied","permission":P,"reason":R,
"message":M}``.  An action waiting for dual control first gets
``{"ok":true,"status":"pending","approval":N}`` and later its final answer.
Invariants: unknown fields, wrong types and oversized values are refused, never
ignored; nothing here echoes a PIN.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from typing import Any

from meterd.errors import ChannelError
from meterd.record import record

MAX_NAME = 64
MAX_PIN = 128
MAX_SETTINGS = 16
MAX_TEXT_VALUE = 64
SESSION_TOKEN_LENGTH = 32
MAX_REF = 64

Ref = int | str | None
SettingValue = str | int | float | bool


class ErrorCode(enum.Enum):
    """The ``error`` field of a failed answer."""

    BAD_JSON = "bad_json"
    BAD_REQUEST = "bad_request"
    UNKNOWN_OP = "unknown_op"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    BUSY = "busy"
    BAD_SESSION = "bad_session"
    LOGIN_FAILED = "login_failed"
    DENIED = "denied"
    INVALID = "invalid"
    FAILED = "failed"


class PanelProtocolError(ChannelError):
    """A panel message that cannot be accepted.

    Attributes:
        code: What to put in the answer's ``error`` field.
        ref: The request's ``id`` if it could be read, for the answer.
    """

    def __init__(self, code: ErrorCode, message: str, ref: Ref = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


class ActionKind(enum.Enum):
    """The panel's actions; the value is the name on the wire."""

    CONFIG = "config"
    RESTART = "restart"
    DEMAND_RESET = "demand_reset"
    TEST_MODE = "test_mode"
    MASTER_RESET = "master_reset"


@record
class Login:
    """Open a panel session with a user name and PIN."""

    user: str
    pin: str
    ref: Ref = None

    def __repr__(self) -> str:
        return f"Login(user={self.user!r}, pin=<redacted>, ref={self.ref!r})"


@record
class Logout:
    """End one session, or (``session`` None) every session of the connection."""

    session: str | None
    ref: Ref = None


@record
class Action:
    """Ask for one meter action.

    Attributes:
        on: For ``test_mode``: enter (True) or leave (False).
        settings: For ``config``: the setting values to change, in order.
    """

    session: str
    action: ActionKind
    on: bool | None = None
    settings: tuple[tuple[str, SettingValue], ...] = ()
    ref: Ref = None


@record
class Approve:
    """Approve (or reject) a pending dual-control request as the second person."""

    session: str
    approval: int
    approve: bool
    ref: Ref = None


@record
class ListPending:
    """List the dual-control requests waiting for a second person."""

    session: str
    ref: Ref = None


Op = Login | Logout | Action | Approve | ListPending

_FIELDS: dict[str, frozenset[str]] = {
    "login": frozenset({"op", "id", "user", "pin"}),
    "logout": frozenset({"op", "id", "session"}),
    "action": frozenset({"op", "id", "session", "action", "on", "settings"}),
    "approve": frozenset({"op", "id", "session", "approval"}),
    "reject": frozenset({"op", "id", "session", "approval"}),
    "pending": frozenset({"op", "id", "session"}),
}


def _ref(message: Mapping[str, Any]) -> Ref:
    ref = message.get("id")
    if ref is None or (isinstance(ref, int) and not isinstance(ref, bool) and abs(ref) < 2**53):
        return ref
    if isinstance(ref, str) and len(ref) <= MAX_REF and ref.isprintable():
        return ref
    raise PanelProtocolError(ErrorCode.BAD_REQUEST, f"id must be an integer or a string of at most {MAX_REF}")


def _text(message: Mapping[str, Any], key: str, limit: int, ref: Ref) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise PanelProtocolError(
            ErrorCode.BAD_REQUEST, f"{key} must be printable text of 1..{limit} characters", ref
        )
    return value


def _session(message: Mapping[str, Any], ref: Ref) -> str:
    token = _text(message, "session", SESSION_TOKEN_LENGTH, ref)
    if len(token) != SESSION_TOKEN_LENGTH or any(c not in "0123456789abcdef" for c in token):
        raise PanelProtocolError(ErrorCode.BAD_SESSION, "no such session", ref)
    return token


def _settings(message: Mapping[str, Any], ref: Ref) -> tuple[tuple[str, SettingValue], ...]:
    settings = message.get("settings")
    if not isinstance(settings, dict) or not 0 < len(settings) <= MAX_SETTINGS:
        raise PanelProtocolError(
            ErrorCode.BAD_REQUEST, f"settings must be an object of 1..{MAX_SETTINGS} values", ref
        )
    out: list[tuple[str, SettingValue]] = []
    for key, value in settings.items():
        if len(key) > MAX_NAME or not key.isidentifier():
            raise PanelProtocolError(ErrorCode.BAD_REQUEST, "setting names are identifiers", ref)
        ok = (
            isinstance(value, bool | int)
            or (isinstance(value, float) and math.isfinite(value))
            or (isinstance(value, str) and len(value) <= MAX_TEXT_VALUE and value.isprintable())
        )
        if not ok:
            raise PanelProtocolError(ErrorCode.BAD_REQUEST, f"setting {key} has an unusable value", ref)
        out.append((key, value))
    return tuple(out)


def _action(message: Mapping[str, Any], ref: Ref) -> Action:
    session = _session(message, ref)
    name = message.get("action")
    try:
        kind = ActionKind(name)
    except ValueError:
        known = ", ".join(k.value for k in ActionKind)
        raise PanelProtocolError(ErrorCode.BAD_REQUEST, f"action must be one of {known}", ref) from None
    on: bool | None = None
    settings: tuple[tuple[str, SettingValue], ...] = ()
    extra = set(message) - {"op", "id", "session", "action"}
    if kind is ActionKind.TEST_MODE:
        on = message.get("on")
        if not isinstance(on, bool):
            raise PanelProtocolError(ErrorCode.BAD_REQUEST, "test_mode needs on: true or false", ref)
        extra.discard("on")
    elif kind is ActionKind.CONFIG:
        settings = _settings(message, ref)
        extra.discard("settings")
    if extra:
        raise PanelProtocolError(ErrorCode.BAD_REQUEST, f"{kind.value} takes no {sorted(extra)[0]}", ref)
    return Action(session, kind, on, settings, ref)


def parse(line: bytes) -> Op:
    """Parse one message (without its newline).

    Raises:
        PanelProtocolError: Not UTF-8 JSON, not an object, an unknown op or
            field, or a field of the wrong type or size.
    """
    try:
        message = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PanelProtocolError(ErrorCode.BAD_JSON, "not a JSON message") from None
    if not isinstance(message, dict):
        raise PanelProtocolError(ErrorCode.BAD_REQUEST, "a message is a JSON object")
    ref = _ref(message)
    op = message.get("op")
    if not isinstance(op, str) or op not in _FIELDS:
        raise PanelProtocolError(ErrorCode.UNKNOWN_OP, f"op must be one of {', '.join(sorted(_FIELDS))}", ref)
    unknown = set(message) - _FIELDS[op]
    if unknown:
        raise PanelProtocolError(ErrorCode.BAD_REQUEST, f"{op} has no field {sorted(unknown)[0]}", ref)
    if op == "login":
        return Login(_text(message, "user", MAX_NAME, ref), _text(message, "pin", MAX_PIN, ref), ref)
    if op == "logout":
        return Logout(_session(message, ref) if "session" in message else None, ref)
    if op == "action":
        return _action(message, ref)
    if op == "pending":
        return ListPending(_session(message, ref), ref)
    approval = message.get("approval")
    if not isinstance(approval, int) or isinstance(approval, bool) or not 0 < approval < 2**31:
        raise PanelProtocolError(ErrorCode.BAD_REQUEST, "approval must be a positive integer", ref)
    return Approve(_session(message, ref), approval, op == "approve", ref)


def _no_constant(name: str) -> None:
    # NaN and Infinity are not JSON; refusing them keeps every value representable.
    raise ValueError(name)


def encode(answer: Mapping[str, Any]) -> bytes:
    """Return ``answer`` as one ASCII JSON line."""
    return json.dumps(answer, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def failure(code: ErrorCode, message: str, ref: Ref = None, **fields: Any) -> dict[str, Any]:
    """Return a failed answer."""
    answer: dict[str, Any] = {"ok": False, "error": code.value, "message": message, **fields}
    if ref is not None:
        answer["id"] = ref
    return answer


def success(ref: Ref = None, **fields: Any) -> dict[str, Any]:
    """Return a successful answer."""
    answer: dict[str, Any] = {"ok": True, **fields}
    if ref is not None:
        answer["id"] = ref
    return answer
