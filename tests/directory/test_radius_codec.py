"""The RADIUS codec against RFC 2865's worked example and an independent reply encoder."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest

from meterd.directory.radius_codec import (
    ACCESS_ACCEPT,
    ACCESS_REJECT,
    CLASS,
    MESSAGE_AUTHENTICATOR,
    USER_NAME,
    USER_PASSWORD,
    RadiusPacketError,
    decode_reply,
    encode_request,
    hide_password,
    parse_attributes,
    vendor_attribute,
    vendor_values,
)
from tests.directory.fake_radius import encode_reply, request_message_authenticator_ok, reveal_password, vsa

# RFC 2865 section 7.1: "nemo" logs in with "arctangent"; the shared secret is "xyzzy5461".
RFC_SECRET = b"xyzzy5461"
RFC_REQUEST = bytes.fromhex(
    "01000038 0f403f94 73978057 bd83d5cb 98f4227a 01066e65 6d6f0212 0dbe708d"
    "93d413ce 3196e43f 782a0aee 0406c0a8 01100506 00000003"
)
RFC_ACCEPT = bytes.fromhex(
    "02000026 86fe220e 7624ba2a 1005f6bf 9b55e0b2 06060000 00010f06 00000000 0e06c0a8 0103"
)
RFC_AUTHENTICATOR = RFC_REQUEST[4:20]

SECRET = b"0123456789abcdef-test"
AUTH = bytes(range(16))


def test_password_hiding_matches_rfc_2865_example() -> None:
    assert hide_password(b"arctangent", RFC_SECRET, RFC_AUTHENTICATOR) == RFC_REQUEST[28:44]


def test_long_password_chains_blocks_and_round_trips() -> None:
    password = b"p" * 40
    hidden = hide_password(password, SECRET, AUTH)
    assert len(hidden) == 48
    # The second block is keyed by the first hidden block (RFC 2865 section 5.2), not the authenticator.
    pad = hashlib.md5(SECRET + hidden[:16]).digest()
    assert bytes(a ^ b for a, b in zip(hidden[16:32], pad, strict=True)) == password[16:32]


@pytest.mark.parametrize("password", [b"", b"x" * 129])
def test_password_length_limits(password: bytes) -> None:
    with pytest.raises(RadiusPacketError, match="1 to 128 octets"):
        hide_password(password, SECRET, AUTH)


def test_rfc_2865_accept_has_the_right_response_authenticator_but_no_message_authenticator() -> None:
    # The RFC's own Access-Accept predates RFC 3579: its Response Authenticator is right, and
    # that alone is what BlastRADIUS forges, so it is still no answer.
    with pytest.raises(RadiusPacketError, match="no Message-Authenticator"):
        decode_reply(RFC_ACCEPT, 0, RFC_AUTHENTICATOR, RFC_SECRET)
    with pytest.raises(RadiusPacketError, match="Response Authenticator"):
        decode_reply(RFC_ACCEPT, 0, RFC_AUTHENTICATOR, b"another secret")


def test_request_carries_a_valid_message_authenticator_first() -> None:
    packet = encode_request(
        7, AUTH, SECRET, [(USER_NAME, b"nemo"), (USER_PASSWORD, hide_password(b"pw", SECRET, AUTH))]
    )
    code, ident, length = struct.unpack_from("!BBH", packet)
    assert (code, ident, length) == (1, 7, len(packet))
    attributes = parse_attributes(packet[20:])
    assert attributes[0][0] == MESSAGE_AUTHENTICATOR
    assert request_message_authenticator_ok(packet, SECRET)
    assert not request_message_authenticator_ok(packet, b"another secret")
    assert reveal_password(packet, SECRET) == b"pw"


def test_reply_with_message_authenticator_decodes() -> None:
    data = encode_reply(ACCESS_ACCEPT, 9, AUTH, SECRET, [(CLASS, b"grid-ops"), vsa(50316, 1, b"operator")])
    reply = decode_reply(data, 9, AUTH, SECRET)
    assert reply.code == ACCESS_ACCEPT
    assert reply.values(CLASS) == [b"grid-ops"]
    assert vendor_values(reply.attributes, 50316, 1) == [b"operator"]


def test_message_authenticator_anywhere_in_the_reply_is_checked() -> None:
    # Servers may place it last; the HMAC covers everything around the zeroed value.
    body = bytes((CLASS, 5)) + b"abc" + bytes((80, 18)) + bytes(16)
    head = struct.pack("!BBH", ACCESS_REJECT, 3, 20 + len(body))
    mac = hmac.new(SECRET, head + AUTH + body, hashlib.md5).digest()
    body = body[:7] + mac
    data = head + hashlib.md5(head + AUTH + body + SECRET).digest() + body
    assert decode_reply(data, 3, AUTH, SECRET).code == ACCESS_REJECT


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"message_authenticator": False}, "no Message-Authenticator"),
        ({"corrupt_message_authenticator": True}, "wrong Message-Authenticator"),
        ({"corrupt_response_authenticator": True}, "wrong Response Authenticator"),
    ],
)
def test_broken_replies_are_refused(kwargs: dict[str, bool], message: str) -> None:
    data = encode_reply(ACCESS_ACCEPT, 9, AUTH, SECRET, [(CLASS, b"g")], **kwargs)
    with pytest.raises(RadiusPacketError, match=message):
        decode_reply(data, 9, AUTH, SECRET)


def test_wrong_identifier_code_and_framing_are_refused() -> None:
    good = encode_reply(ACCESS_ACCEPT, 9, AUTH, SECRET)
    with pytest.raises(RadiusPacketError, match="identifier 9 is not the request's 10"):
        decode_reply(good, 10, AUTH, SECRET)
    with pytest.raises(RadiusPacketError, match="not an answer"):
        decode_reply(encode_reply(4, 9, AUTH, SECRET), 9, AUTH, SECRET)
    with pytest.raises(RadiusPacketError, match="shorter than a RADIUS header"):
        decode_reply(good[:19], 9, AUTH, SECRET)
    with pytest.raises(RadiusPacketError, match="does not fit"):
        decode_reply(good[:-1], 9, AUTH, SECRET)
    # Padding past the length field is ignored (RFC 2865 section 3).
    assert decode_reply(good + b"\0\0", 9, AUTH, SECRET).code == ACCESS_ACCEPT
    broken = bytearray(good)
    broken[21] = 1  # the Message-Authenticator's length octet
    with pytest.raises(RadiusPacketError, match="malformed attribute"):
        decode_reply(bytes(broken), 9, AUTH, SECRET)


def test_two_message_authenticators_are_refused() -> None:
    data = encode_reply(ACCESS_ACCEPT, 1, AUTH, SECRET, [(80, bytes(16))])
    with pytest.raises(RadiusPacketError, match="more than one"):
        decode_reply(data, 1, AUTH, SECRET)


def test_vendor_values_are_multi_valued_and_other_vendors_ignored() -> None:
    several = (
        26,
        (50316).to_bytes(4, "big") + bytes((1, 4)) + b"ab" + bytes((2, 3)) + b"s" + bytes((1, 3)) + b"c",
    )
    attributes = [several, vendor_attribute(50316, 1, b"d"), vsa(9, 1, b"cisco")]
    assert vendor_values(attributes, 50316, 1) == [b"ab", b"c", b"d"]
    assert vendor_values(attributes, 50316, 2) == [b"s"]
    with pytest.raises(RadiusPacketError):
        vendor_values([(26, (50316).to_bytes(4, "big") + bytes((1, 9)) + b"x")], 50316, 1)
