"""The I/O-free parts: framing, the register map, encodings, limits, certificates and configuration."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from meterd.channels.modbus import config as modbus_config
from meterd.channels.modbus import protocol
from meterd.channels.modbus.certificates import _utf8_string, identify
from meterd.channels.modbus.encoding import EncodingError, Kind, decode, encode
from meterd.channels.modbus.limits import ConnectionLimits, RateLimiter
from meterd.channels.modbus.registers import INDEX, REGISTER_MAP, Group, covers_whole_fields, fields_in
from meterd.configspec import Base
from meterd.errors import ConfigError
from meterd.tomlreader import Reader

from .pki import Pki


@given(st.binary(min_size=1, max_size=253))
def test_any_pdu_parses_to_a_request_or_an_exception(body: bytes) -> None:
    parsed = protocol.parse_request(body)
    if isinstance(parsed, protocol.Refusal):
        assert parsed.function == body[0]
    else:
        assert parsed.function in protocol.READ_FUNCTIONS | protocol.WRITE_FUNCTIONS
        assert 1 <= parsed.count <= protocol.MAX_READ_COUNT


@given(st.binary(min_size=7, max_size=7))
def test_any_header_is_accepted_only_if_it_is_modbus(raw: bytes) -> None:
    _, protocol_id, length, _ = struct.unpack(">HHHB", raw)
    try:
        header = protocol.parse_header(raw)
    except protocol.FramingError:
        assert protocol_id != 0 or not 2 <= length <= 254
    else:
        assert 1 <= header.pdu_length <= 253


def test_register_groups_are_separate_runs_each_needing_one_permission() -> None:
    assert len(INDEX) == sum(f.kind.words for f in REGISTER_MAP)
    for a in range(0, 400):
        for n in (1, 2, 10):
            fields = fields_in(a, n)
            if fields is not None:
                assert len({f.group for f in fields}) == 1
    assert {f.group for f in REGISTER_MAP if f.writable} == set(Group) - {Group.MEASUREMENT}
    clock = fields_in(120, 2)
    assert clock is not None
    assert covers_whole_fields(clock, 120, 2)
    half = fields_in(121, 1)
    assert half is not None
    assert not covers_whole_fields(half, 121, 1)


@pytest.mark.parametrize(
    ("kind", "value", "choices"),
    [
        (Kind.U16, 65535, ()),
        (Kind.U32, 1_800_000_000, ()),
        (Kind.U64, 12_345_678_901, ()),
        (Kind.F32, 230.5, ()),
        (Kind.IPV4, "192.168.1.100", ()),
        (Kind.ENUM, "odd", ("none", "even", "odd")),
    ],
)
def test_encodings_round_trip(kind: Kind, value: object, choices: tuple[Any, ...]) -> None:
    words = encode(kind, value, choices)  # type: ignore[arg-type]
    assert len(words) == kind.words
    assert decode(kind, tuple(words), choices) == value


def test_bad_written_words_are_refused() -> None:
    with pytest.raises(EncodingError):
        decode(Kind.F32, (0x7FC0, 0), ())  # NaN
    with pytest.raises(EncodingError):
        decode(Kind.ENUM, (3,), ("a", "b"))
    assert encode(Kind.U16, 70_000) == [0xFFFF]  # saturates, never wraps


def test_connection_limits_are_per_client_and_total() -> None:
    limits = ConnectionLimits(total=3, per_client=2)
    assert limits.admit("a")
    assert limits.admit("a")
    assert not limits.admit("a")
    assert limits.admit("b")
    assert not limits.admit("c")
    limits.release("a")
    assert limits.admit("c")
    assert limits.open == 3


def test_rate_limiter_allows_a_burst_then_spaces_requests() -> None:
    limiter = RateLimiter(10)
    delays = [limiter.delay("a", 100.0) for _ in range(12)]
    assert delays[:10] == [0.0] * 10
    assert delays[10] == pytest.approx(0.1)
    assert delays[11] == pytest.approx(0.2)
    assert limiter.delay("b", 100.0) == 0.0  # another client is not affected
    assert limiter.delay("a", 102.0) == 0.0  # a client that waited is fresh again


def test_role_extension_parsing(pki: Pki) -> None:
    pem = pki.clients["operator"].cert.read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    identity = identify(der)
    assert identity.role == "operator"
    assert identity.common_name == "scada-ops"
    assert identity.fingerprint == pki.clients["operator"].fingerprint
    assert _utf8_string(b"\x0c\x81\x03abc") == "abc"  # long-form length
    assert _utf8_string(b"\x13\x03abc") is None  # a PrintableString is not the role
    assert _utf8_string(b"\x0c\x04abc") is None  # truncated
    assert _utf8_string(b"\x0c\x02\xff\xfe") is None  # not UTF-8
    assert _utf8_string(b"\x0c\x00") is None
    assert identify(b"not a certificate").role is None


def _load(table: dict[str, Any]) -> tuple[modbus_config.ModbusConfig, list[ConfigError]]:
    errors: list[ConfigError] = []
    loaded = modbus_config.LOADER.load(
        Reader(table, "modbus", "meterd.toml", errors), {Base.CONFIG: Path("/etc/meterd")}
    )
    return loaded, errors


def test_config_defaults_and_paths() -> None:
    loaded, errors = _load(
        {
            "tls": {"enabled": True, "cert": "tls/meter.pem", "key": "/keys/meter.key", "ca": "tls/ca.pem"},
            "idle_timeout": 30,
        }
    )
    assert not errors
    assert (loaded.listen, loaded.port, loaded.unit_ids) == ("127.0.0.1", 5020, (1,))
    assert loaded.tls.port == 8020
    assert loaded.idle_timeout == 30.0
    assert loaded.tls.cert == Path("/etc/meterd/tls/meter.pem")
    assert loaded.tls.key == Path("/keys/meter.key")


def test_config_errors_name_the_key() -> None:
    _, errors = _load(
        {
            "max_conections": 4,
            "port": 70000,
            "unit_ids": [1, 1, 300],
            "listen": "localhost",
            "idle_timeout": True,
            "tls": {"enabled": True, "certificate": "x"},
            "max_connections": 4,
            "max_connections_per_client": 8,
        }
    )
    text = "\n".join(e.render() for e in errors)
    assert 'modbus.max_conections: unknown key "max_conections"; did you mean "max_connections"?' in text
    assert "modbus.port: must be between 0 and 65535" in text
    assert "modbus.unit_ids[1]: unit id 1 is listed twice" in text
    assert "modbus.unit_ids[2]: must be a unit id between 0 and 255" in text
    assert "modbus.listen: 'localhost' is not an IP address" in text
    assert "modbus.idle_timeout: must be a number of seconds" in text
    assert 'modbus.tls.certificate: unknown key "certificate"' in text
    assert "modbus.tls.cert: is required when Modbus/TCP Security is enabled" in text
    assert "modbus.max_connections_per_client: must not exceed max_connections (4)" in text


def test_config_gives_each_listener_its_own_connections() -> None:
    loaded, errors = _load(
        {"max_connections": 4, "max_connections_per_client": 2, "tls": {"max_connections": 6}}
    )
    assert not errors
    assert (loaded.max_connections, loaded.max_connections_per_client) == (4, 2)
    assert (loaded.tls.max_connections, loaded.tls.max_connections_per_client) == (6, 6)
    defaults = modbus_config.TlsConfig()
    assert (defaults.max_connections, defaults.max_connections_per_client) == (32, 8)
    _, errors = _load(
        {
            "max_connections": 4,
            "tls": {"max_conections": 4, "max_connections": 2, "max_connections_per_client": 3},
        }
    )
    text = "\n".join(e.render() for e in errors)
    assert 'modbus.tls.max_conections: unknown key "max_conections"; did you mean "max_connections"?' in text
    assert "modbus.tls.max_connections_per_client: must not exceed max_connections (2)" in text
    _, errors = _load({"tls": {"max_connections": 0, "max_connections_per_client": 5000}})
    text = "\n".join(e.render() for e in errors)
    assert "modbus.tls.max_connections: must be between 1 and 4096, not 0" in text
    assert "modbus.tls.max_connections_per_client: must be between 1 and 4096, not 5000" in text


def test_config_bounds_tls_handshakes_in_progress() -> None:
    loaded, errors = _load({"tls": {"max_handshakes": 4, "max_handshakes_per_client": 1}})
    assert not errors
    assert (loaded.tls.max_handshakes, loaded.tls.max_handshakes_per_client) == (4, 1)
    defaults = modbus_config.TlsConfig()
    assert (defaults.max_handshakes, defaults.max_handshakes_per_client) == (8, 2)
    _, errors = _load({"tls": {"max_handshake": 4, "max_handshakes": 2, "max_handshakes_per_client": 3}})
    text = "\n".join(e.render() for e in errors)
    assert 'modbus.tls.max_handshake: unknown key "max_handshake"; did you mean "max_handshakes"?' in text
    assert "modbus.tls.max_handshakes_per_client: must not exceed max_handshakes (2)" in text
    _, errors = _load({"tls": {"max_handshakes": 0, "max_handshakes_per_client": 5000}})
    text = "\n".join(e.render() for e in errors)
    assert "modbus.tls.max_handshakes: must be between 1 and 4096, not 0" in text
    assert "modbus.tls.max_handshakes_per_client: must be between 1 and 4096, not 5000" in text
