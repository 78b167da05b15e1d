"""RADIUS packets for a PAP login: Access-Request out, a verified reply in (no I/O).

Only what a meter's login needs: RFC 2865 packets and User-Password hiding,
the RFC 3579 Message-Authenticator, and vendor-specific attributes in the
RFC 2865 section 5.26 layout.

Invariants:
    * Every Access-Request carries a Message-Authenticator, as its first
      attribute (the BlastRADIUS advice, CVE-2024-3596).
    * :func:`decode_reply` returns only a reply whose code is
      Access-Accept, Access-Reject or Access-Challenge, whose identifier is
      the request's, whose attributes parse exactly, whose Response
      Authenticator is right and which carries exactly one valid
      Message-Authenticator.  Anything else raises
      :class:`RadiusPacketError`: such a datagram is no answer at all.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable, Sequence

from meterd.errors import MeterdError
from meterd.record import record

ACCESS_REQUEST = 1
ACCESS_ACCEPT = 2
ACCESS_REJECT = 3
ACCESS_CHALLENGE = 11

USER_NAME = 1
USER_PASSWORD = 2
FILTER_ID = 11
CLASS = 25
VENDOR_SPECIFIC = 26
NAS_IDENTIFIER = 32
MESSAGE_AUTHENTICATOR = 80

HEADER = 20
#: RFC 2865 section 3: no packet is longer.
MAX_PACKET = 4096
MAX_VALUE = 253
#: RFC 2865 section 5.2: the hidden password is at most 128 octets.
MAX_PASSWORD = 128

_REPLY_CODES = {
    ACCESS_ACCEPT: "Access-Accept",
    ACCESS_REJECT: "Access-Reject",
    ACCESS_CHALLENGE: "Access-Challenge",
}


class RadiusPacketError(MeterdError):
    """A datagram that is not a valid reply to our request, or a request that cannot be built."""


@record
class Reply:
    """A verified reply.

    Attributes:
        code: ACCESS_ACCEPT, ACCESS_REJECT or ACCESS_CHALLENGE.
        attributes: ``(type, value)`` pairs in packet order.
    """

    code: int
    attributes: tuple[tuple[int, bytes], ...]

    def values(self, kind: int) -> list[bytes]:
        """Every value of the attribute type ``kind``, in packet order."""
        return [value for t, value in self.attributes if t == kind]


def hide_password(password: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """Hide a User-Password as RFC 2865 section 5.2 describes.

    Raises:
        RadiusPacketError: If the password is empty or longer than 128 octets.
    """
    if not password or len(password) > MAX_PASSWORD:
        raise RadiusPacketError(f"a RADIUS password must be 1 to {MAX_PASSWORD} octets long")
    padded = password + b"\0" * (-len(password) % 16)
    out = bytearray()
    previous = authenticator
    for i in range(0, len(padded), 16):
        pad = hashlib.md5(secret + previous, usedforsecurity=False).digest()
        block = bytes(p ^ c for p, c in zip(padded[i : i + 16], pad, strict=True))
        out += block
        previous = block
    return bytes(out)


def _attribute(kind: int, value: bytes) -> bytes:
    if not 1 <= len(value) <= MAX_VALUE:
        raise RadiusPacketError(f"RADIUS attribute {kind} must be 1 to {MAX_VALUE} octets long")
    return bytes((kind, len(value) + 2)) + value


def _signature(secret: bytes, packet: bytes) -> bytes:
    return hmac.new(secret, packet, hashlib.md5).digest()


def encode_request(
    identifier: int, authenticator: bytes, secret: bytes, attributes: Iterable[tuple[int, bytes]]
) -> bytes:
    """Build an Access-Request whose first attribute is its Message-Authenticator.

    Args:
        identifier: The packet identifier (0..255).
        authenticator: 16 random octets, the Request Authenticator.
        secret: The shared secret.
        attributes: ``(type, value)`` pairs, User-Password already hidden.

    Raises:
        RadiusPacketError: If an attribute or the packet is too long.
    """
    body = _attribute(MESSAGE_AUTHENTICATOR, bytes(16)) + b"".join(_attribute(t, v) for t, v in attributes)
    length = HEADER + len(body)
    if length > MAX_PACKET:
        raise RadiusPacketError("the Access-Request would be longer than RADIUS allows")
    packet = struct.pack("!BBH", ACCESS_REQUEST, identifier, length) + authenticator + body
    return packet[:22] + _signature(secret, packet) + packet[38:]


def parse_attributes(data: bytes) -> tuple[tuple[int, bytes], ...]:
    """Split an attribute area into ``(type, value)`` pairs.

    Raises:
        RadiusPacketError: If the attributes do not fill the area exactly.
    """
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        if len(data) - i < 2 or data[i + 1] < 2 or i + data[i + 1] > len(data):
            raise RadiusPacketError(f"malformed attribute at offset {HEADER + i}")
        out.append((data[i], data[i + 2 : i + data[i + 1]]))
        i += data[i + 1]
    return tuple(out)


def decode_reply(data: bytes, identifier: int, request_authenticator: bytes, secret: bytes) -> Reply:
    """Verify a datagram as the reply to one Access-Request and return it.

    Args:
        data: The datagram as received.
        identifier: The request's identifier.
        request_authenticator: The request's Request Authenticator.
        secret: The shared secret.

    Raises:
        RadiusPacketError: Naming the first check the datagram failed.
    """
    if len(data) < HEADER:
        raise RadiusPacketError(f"{len(data)} octets is shorter than a RADIUS header")
    code, ident, length = struct.unpack_from("!BBH", data)
    # Octets past the length field are padding (RFC 2865 section 3); fewer is a broken packet.
    if not HEADER <= length <= min(len(data), MAX_PACKET):
        raise RadiusPacketError(f"length field {length} does not fit the {len(data)} octets received")
    if ident != identifier:
        raise RadiusPacketError(f"identifier {ident} is not the request's {identifier}")
    if code not in _REPLY_CODES:
        raise RadiusPacketError(f"code {code} is not an answer to an Access-Request")
    packet = data[:length]
    attributes = parse_attributes(packet[HEADER:])
    expected = hashlib.md5(
        packet[:4] + request_authenticator + packet[HEADER:] + secret, usedforsecurity=False
    ).digest()
    if not hmac.compare_digest(expected, packet[4:HEADER]):
        raise RadiusPacketError("wrong Response Authenticator (is the shared secret the same?)")
    _check_message_authenticator(packet, request_authenticator, secret)
    return Reply(code, attributes)


def _check_message_authenticator(packet: bytes, request_authenticator: bytes, secret: bytes) -> None:
    offsets: list[int] = []
    i = HEADER
    while i < len(packet):
        if packet[i] == MESSAGE_AUTHENTICATOR:
            if packet[i + 1] != 18:
                raise RadiusPacketError("a Message-Authenticator that is not 16 octets long")
            offsets.append(i + 2)
        i += packet[i + 1]
    if not offsets:
        raise RadiusPacketError("no Message-Authenticator (required on every reply: CVE-2024-3596)")
    if len(offsets) > 1:
        raise RadiusPacketError("more than one Message-Authenticator")
    at = offsets[0]
    # RFC 3579 section 3.2: computed over the reply with the Request Authenticator in place
    # of the Response Authenticator and the attribute's own value zeroed.
    zeroed = packet[:4] + request_authenticator + packet[HEADER:at] + bytes(16) + packet[at + 16 :]
    if not hmac.compare_digest(_signature(secret, zeroed), packet[at : at + 16]):
        raise RadiusPacketError("wrong Message-Authenticator")


def vendor_values(attributes: Sequence[tuple[int, bytes]], vendor_id: int, vendor_type: int) -> list[bytes]:
    """Values of one vendor-specific sub-attribute, in packet order (RFC 2865 section 5.26 layout).

    Raises:
        RadiusPacketError: If one of the vendor's Vendor-Specific attributes is malformed.
    """
    out: list[bytes] = []
    for kind, value in attributes:
        if kind != VENDOR_SPECIFIC or len(value) < 4 or int.from_bytes(value[:4], "big") != vendor_id:
            continue
        for sub_type, sub_value in parse_attributes(value[4:]):
            if sub_type == vendor_type:
                out.append(sub_value)
    return out


def vendor_attribute(vendor_id: int, vendor_type: int, value: bytes) -> tuple[int, bytes]:
    """A Vendor-Specific attribute carrying one sub-attribute (for tests and fake servers)."""
    return VENDOR_SPECIFIC, vendor_id.to_bytes(4, "big") + _attribute(vendor_type, value)


def reply_name(code: int) -> str:
    """The name of a reply code, e.g. ``Access-Accept``."""
    return _REPLY_CODES.get(code, f"code {code}")
