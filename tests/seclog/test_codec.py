"""Frame encoding, key evolution and entry validation."""

from __future__ import annotations

import hashlib
import json

import pytest

from meterd.policy.request import Outcome
from meterd.seclog.codec import (
    GENESIS,
    FrameError,
    decode_frame,
    evolve,
    find_frame,
    key_at,
    make_body,
    make_frame,
    seal,
)
from meterd.seclog.entry import encode_detail, make_entry
from meterd.seclog.errors import RecordRejectedError
from meterd.seclog.events import EventType, PrincipalKind


def _frame(seq: int = 1, principal: str = "alice") -> bytes:
    entry = make_entry(
        EventType.LOGIN_SUCCESS, principal=principal, outcome=Outcome.ALLOW, detail={"method": "publickey"}
    )
    body = make_body(seq, "2026-01-01T00:00:00.000001Z", entry.fields, GENESIS)
    return make_frame(body, seal(b"k" * 32, hashlib.sha256(body).digest()))


def test_frame_round_trip() -> None:
    frame = decode_frame(_frame(7, "zoë\nx"))
    record = frame.record
    assert record.seq == 7
    assert record.principal == "zoë\nx"
    assert record.principal_kind is PrincipalKind.USER
    assert record.detail == {"method": "publickey"}
    assert record.digest == hashlib.sha256(frame.body).hexdigest()
    assert _frame().count(b"\n") == 1  # escaped: a body never holds a newline


def test_damaged_frame_is_rejected() -> None:
    line = bytearray(_frame())
    line[30] ^= 0x01
    with pytest.raises(FrameError):
        decode_frame(bytes(line))


def test_frame_found_inside_syslog_line() -> None:
    line = _frame()
    wrapped = b'<110>1 2026-01-01T00:00:00Z meter meterd - login_success [meterd@50316 seq="1"] ' + line
    assert find_frame(wrapped) == line.rstrip(b"\n")
    assert find_frame(b"<13>1 - - - - - - hello") is None


def test_key_evolution_is_one_way_and_deterministic() -> None:
    k1 = bytes(32)
    assert key_at(k1, 1) == k1
    assert key_at(k1, 3) == evolve(evolve(k1))
    assert evolve(k1) != k1


@pytest.mark.parametrize(
    "detail",
    [
        {"password": "hunter2"},
        {"new_pin": "1234"},
        {"api_key": "abc"},
        {"session_token": "x"},
        {"note": "$argon2id$v=19$m=65536,t=3,p=4$abc"},
        {"note": "$6$salt$hash"},
        {"blob": "-----BEGIN OPENSSH PRIVATE KEY-----"},
        {"BadKey": 1},
        {"nested": [1, 2]},
        {f"k{i}": i for i in range(17)},
    ],
)
def test_secrets_and_bad_detail_are_refused(detail: dict[str, object]) -> None:
    with pytest.raises(RecordRejectedError):
        encode_detail(detail)  # type: ignore[arg-type]


def test_safe_detail_passes() -> None:
    detail = {"key_fingerprint": "SHA256:abc", "method": "password", "attempts": 3, "locked": True, "x": None}
    assert json.loads(encode_detail(detail)) == detail  # type: ignore[arg-type]


def test_oversized_field_is_refused() -> None:
    with pytest.raises(RecordRejectedError, match="resource"):
        make_entry(EventType.CONFIG_ACCESS, principal="a", outcome=Outcome.ALLOW, resource="/" * 300)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("outcome", "allow"),
        ("channel", "ssh"),
        ("permission", "security_logs_access"),
        ("principal_kind", "user"),
        ("principal", 7),
        ("source", "s" * 300),
    ],
)
def test_a_bad_field_is_named(field: str, value: object) -> None:
    fields: dict[str, object] = {"principal": "a", "outcome": Outcome.ALLOW, field: value}
    with pytest.raises(RecordRejectedError) as info:
        make_entry(EventType.CONFIG_ACCESS, **fields)  # type: ignore[arg-type]
    assert info.value.field == field
    with pytest.raises(RecordRejectedError, match="EventType"):
        make_entry("login_success", principal="a", outcome=Outcome.ALLOW)  # type: ignore[arg-type]


def test_principal_kind_follows_the_name_unless_given() -> None:
    def kind(principal: str, given: PrincipalKind | None = None) -> str:
        entry = make_entry(
            EventType.CONFIG_ACCESS, principal=principal, outcome=Outcome.ALLOW, principal_kind=given
        )
        return str(json.loads(b"{" + entry.fields + b"}")["pk"])

    assert [kind("anonymous"), kind("meterd"), kind("alice")] == ["anonymous", "system", "user"]
    assert kind("scada-1", PrincipalKind.APPLICATION) == "application"
