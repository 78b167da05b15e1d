"""What a caller asks the log to write, checked before it is queued.

Validation runs in the appending thread, so a bad record fails its own caller
at once and the single writer only sequences and seals.

Invariants checked here:
    * No secret reaches the log: detail keys naming a password, PIN, key,
      secret, token or hash are refused, and so are values shaped like a
      crypt(3)/argon2 hash or a PEM private key.
    * Records stay small: bounded field lengths, at most 16 detail entries of
      scalar values.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import NamedTuple, NoReturn, Required, TypedDict

from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, Outcome
from meterd.seclog.codec import encode_fields, escape_json
from meterd.seclog.errors import RecordRejectedError
from meterd.seclog.events import SYSTEM_PRINCIPAL, DetailValue, EventType, PrincipalKind

MAX_DETAIL_ITEMS = 16
MAX_TEXT = 256
_DETAIL_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
_SECRET_TOKENS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pin",
        "secret",
        "key",
        "hash",
        "token",
        "credential",
        "credentials",
        "passphrase",
        "otp",
        "salt",
        "private",
    }
)
#: Suffixes that make a key about a secret, not the secret itself (``key_fingerprint``).
_SAFE_SUFFIXES = ("_fingerprint", "_id", "_type", "_name", "_length")
_SECRET_VALUE = re.compile(
    r"^(\$(argon2(id|i|d)?|2[abxy]|[1567y]|gy|scrypt|pbkdf2[-_a-z0-9]*)\$|-----BEGIN [A-Z ]*PRIVATE KEY)"
)
_USER, _ANONYMOUS, _SYSTEM = (
    k._value_ for k in (PrincipalKind.USER, PrincipalKind.ANONYMOUS, PrincipalKind.SYSTEM)
)
#: Every value _SECRET_VALUE matches starts with one of these (a cheaper test first).
_SECRET_STARTS = ("$", "-----BEGIN ")


class RecordFields(TypedDict, total=False):
    """A record's caller-supplied fields, as keyword arguments of :meth:`SecurityLog.append`.

    See :func:`make_entry` for their meaning and defaults.
    """

    principal: Required[str]
    outcome: Required[Outcome]
    channel: Channel
    source: str
    permission: Permission | None
    resource: str
    detail: Mapping[str, DetailValue] | None
    principal_kind: PrincipalKind | None


class Entry(NamedTuple):
    """A validated record waiting for its sequence number.

    A named tuple rather than a frozen dataclass: it is as immutable and costs
    a third as much to build, once per append.

    Attributes:
        event: The event type.
        fields: The caller's fields, already encoded (see :func:`encode_fields`): ASCII.
    """

    event: EventType
    fields: bytes


def _text(name: str, value: str) -> str:
    if not isinstance(value, str):
        raise RecordRejectedError("must be a string", field=name)
    if len(value) > MAX_TEXT:
        raise RecordRejectedError(f"longer than {MAX_TEXT} characters", field=name)
    return value


#: Keys already checked: they come from code, so the set stays small (and is bounded anyway).
_GOOD_KEYS: set[str] = set()
_GOOD_KEYS_MAX = 4096


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _DETAIL_KEY.fullmatch(key):
        raise RecordRejectedError(
            "detail keys are lower_snake_case, at most 32 characters", field=f"detail.{key}"
        )
    if not key.endswith(_SAFE_SUFFIXES) and _SECRET_TOKENS.intersection(key.split("_")):
        raise RecordRejectedError("secrets never go into the security log", field=f"detail.{key}")
    if len(_GOOD_KEYS) < _GOOD_KEYS_MAX:
        _GOOD_KEYS.add(key)


def _detail_item(key: str, value: DetailValue) -> str:
    """Check one detail item and return it as JSON (``"key":value``)."""
    if key not in _GOOD_KEYS:
        _check_key(key)
    if isinstance(value, str):
        _text(f"detail.{key}", value)
        if _SECRET_VALUE.match(value):
            raise RecordRejectedError("value looks like a secret", field=f"detail.{key}")
        return f'"{key}":{escape_json(value)}'
    if value is None:
        return f'"{key}":null'
    if isinstance(value, bool):
        return f'"{key}":true' if value else f'"{key}":false'
    if isinstance(value, int):
        return f'"{key}":{int(value)}'
    raise RecordRejectedError("detail values are str, int, bool or None", field=f"detail.{key}")


def encode_detail(detail: Mapping[str, DetailValue] | None) -> str:
    """Check ``detail`` and return it as a JSON object, in one pass (it runs on every append).

    Raises:
        RecordRejectedError: Too many items, a bad or secret-naming key, a
            non-scalar, oversized or secret-looking value.
    """
    if not detail:
        return "{}"
    if len(detail) > MAX_DETAIL_ITEMS:
        raise RecordRejectedError(f"more than {MAX_DETAIL_ITEMS} items", field="detail")
    items = []
    for key, value in detail.items():
        # The common items inline; anything else (a new key, a secret-looking
        # prefix, a bool, a bad value) takes the full check in _detail_item.
        if key not in _GOOD_KEYS:
            items.append(_detail_item(key, value))
        elif type(value) is int:
            items.append(f'"{key}":{value}')
        elif type(value) is str and len(value) <= MAX_TEXT and not value.startswith(_SECRET_STARTS):
            items.append(f'"{key}":{escape_json(value)}')
        else:
            items.append(_detail_item(key, value))
    return "{" + ",".join(items) + "}"


def _reject(**values: object) -> NoReturn:
    """Raise for the first of ``values`` that is not what make_entry accepts."""
    expected: dict[str, tuple[type, ...]] = {
        "event": (EventType,),
        "outcome": (Outcome,),
        "channel": (Channel,),
        "permission": (Permission, type(None)),
        "principal_kind": (PrincipalKind, type(None)),
    }
    for name, value in values.items():
        if name in expected:
            if not isinstance(value, expected[name]):
                kinds = " or ".join("None" if t is type(None) else f"a {t.__name__}" for t in expected[name])
                raise RecordRejectedError(f"must be {kinds}", field=name)
        elif not isinstance(value, str) or len(value) > MAX_TEXT:
            raise RecordRejectedError(f"must be a string of at most {MAX_TEXT} characters", field=name)
    raise AssertionError("called without a bad value")


def make_entry(
    event: EventType,
    *,
    principal: str,
    outcome: Outcome,
    channel: Channel = Channel.LOCAL,
    source: str = "",
    permission: Permission | None = None,
    resource: str = "",
    detail: Mapping[str, DetailValue] | None = None,
    principal_kind: PrincipalKind | None = None,
) -> Entry:
    """Validate and encode one record's caller fields.

    The principal kind defaults to what the name implies: ``anonymous``,
    ``system`` for the daemon's own name, otherwise ``user``.

    Raises:
        RecordRejectedError: A field is invalid (see module invariants).
    """
    return Entry(
        event,
        encode_record(
            event, principal, outcome, channel, source, permission, resource, detail, principal_kind
        ),
    )


def encode_record(  # noqa: PLR0917 - positional on the hot path (see below)
    event: EventType,
    principal: str,
    outcome: Outcome,
    channel: Channel,
    source: str,
    permission: Permission | None,
    resource: str,
    detail: Mapping[str, DetailValue] | None,
    principal_kind: PrincipalKind | None,
    /,
) -> bytes:
    """Validate one record's caller fields and return them encoded: :func:`make_entry` without the Entry.

    The async append path calls this directly: it runs once per append, where
    matching nine keyword arguments and building the named tuple would cost a
    fifth of the encoding.

    Raises:
        RecordRejectedError: A field is invalid (see module invariants).
    """
    # One combined test on the hot path; _reject says which field is wrong.
    if not (
        isinstance(event, EventType)
        and isinstance(outcome, Outcome)
        and isinstance(channel, Channel)
        and (permission is None or isinstance(permission, Permission))
        and (principal_kind is None or isinstance(principal_kind, PrincipalKind))
        and isinstance(principal, str)
        and isinstance(source, str)
        and isinstance(resource, str)
        and len(principal) <= MAX_TEXT
        and len(source) <= MAX_TEXT
        and len(resource) <= MAX_TEXT
    ):
        _reject(
            event=event,
            outcome=outcome,
            channel=channel,
            permission=permission,
            principal_kind=principal_kind,
            principal=principal,
            source=source,
            resource=resource,
        )
    # ``_value_`` is a plain attribute; ``.value`` (a descriptor) and hashing an
    # enum member (a Python-level __hash__) cost several times more per append.
    if principal_kind is not None:
        kind = principal_kind._value_
    elif principal == "anonymous":
        kind = _ANONYMOUS
    elif principal == SYSTEM_PRINCIPAL:
        kind = _SYSTEM
    else:
        kind = _USER
    fields = encode_fields(
        event._value_,
        principal,
        kind,
        channel._value_,
        source,
        "" if permission is None else permission._value_,
        resource,
        outcome._value_,
        encode_detail(detail),
    )
    # ASCII by construction (the escaper leaves nothing else), so this cannot fail.
    return fields.encode("ascii")


def encode_decision(
    decision: Decision,
    event: EventType | None,
    detail: Mapping[str, DetailValue] | None,
    principal_kind: PrincipalKind | None,
) -> bytes:
    """Return the encoded fields of the record of a guard decision (see :func:`encode_record`).

    The event defaults to ``permission_denied`` for a refusal and
    ``access_decision`` for an allow; the deny reason goes into ``detail.reason``.
    """
    request = decision.request
    merged: dict[str, DetailValue] = dict(detail or {})
    if decision.reason is not None:
        merged.setdefault("reason", decision.reason.value)
    if event is None:
        event = EventType.ACCESS_DECISION if decision.allowed else EventType.PERMISSION_DENIED
    return encode_record(
        event,
        request.principal,
        decision.outcome,
        request.channel,
        request.source,
        request.permission,
        request.resource,
        merged,
        principal_kind,
    )


def system_entry(
    event: EventType, detail: Mapping[str, DetailValue] | None = None, outcome: Outcome = Outcome.ALLOW
) -> Entry:
    """Return an entry written by the log itself (principal ``meterd``, channel ``local``)."""
    return make_entry(
        event, principal=SYSTEM_PRINCIPAL, outcome=outcome, detail=detail, principal_kind=PrincipalKind.SYSTEM
    )


class Clock:
    """UTC timestamps, RFC 3339 with microseconds, as the frames hold them."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = b""

    def stamp(self) -> bytes:
        """Return the current time (formatting the date once a second: it runs on every group)."""
        ns = time.time_ns()
        second = ns // 1_000_000_000
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode("ascii")
            self._second = second
        return b"%s.%06dZ" % (self._prefix, ns // 1000 % 1_000_000)
