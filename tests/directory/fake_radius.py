"""A hostile RADIUS server on 127.0.0.1: real UDP, replies forged or broken on purpose.

Its packet code is written independently of ``meterd.directory.radius_codec``
(the codec is what it tests), straight from RFC 2865 and RFC 3579.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

ACCEPT, REJECT, CHALLENGE = 2, 3, 11

#: What the server does with each Access-Request.
MODES = (
    "accept",  # a valid Access-Accept with the configured attributes
    "reject",  # a valid Access-Reject
    "challenge",  # a valid Access-Challenge
    "silent",  # nothing at all
    "no-message-authenticator",  # an Access-Accept without Message-Authenticator (right Response Authenticator)
    "wrong-message-authenticator",  # an Access-Accept whose Message-Authenticator is wrong
    "wrong-response-authenticator",  # a valid Message-Authenticator, a wrong Response Authenticator
    "wrong-identifier",  # a valid Access-Accept for another identifier
    "other-port",  # a valid Access-Accept sent from another port
    "other-address",  # a valid Access-Accept sent from 127.0.0.2, same port
    "junk-then-accept",  # every broken kind above, then a valid Access-Accept
    "flood",  # ten Access-Accepts without Message-Authenticator
)


def encode_reply(
    code: int,
    identifier: int,
    request_authenticator: bytes,
    secret: bytes,
    attributes: Sequence[tuple[int, bytes]] = (),
    *,
    message_authenticator: bool = True,
    corrupt_message_authenticator: bool = False,
    corrupt_response_authenticator: bool = False,
) -> bytes:
    """A reply as a server computes it: Message-Authenticator first, then the Response Authenticator."""
    body = b"".join(bytes((t, len(v) + 2)) + v for t, v in attributes)
    if message_authenticator:
        body = bytes((80, 18)) + bytes(16) + body
    head = struct.pack("!BBH", code, identifier, 20 + len(body))
    if message_authenticator:
        mac = bytearray(hmac.new(secret, head + request_authenticator + body, hashlib.md5).digest())
        if corrupt_message_authenticator:
            mac[0] ^= 1
        body = body[:2] + bytes(mac) + body[18:]
    response = bytearray(hashlib.md5(head + request_authenticator + body + secret).digest())
    if corrupt_response_authenticator:
        response[0] ^= 1
    return head + bytes(response) + body


def vsa(vendor: int, kind: int, value: bytes) -> tuple[int, bytes]:
    return 26, vendor.to_bytes(4, "big") + bytes((kind, len(value) + 2)) + value


def request_message_authenticator_ok(data: bytes, secret: bytes) -> bool:
    """Whether an Access-Request carries one valid Message-Authenticator (RFC 3579 section 3.2)."""
    i, found = 20, []
    while i + 2 <= len(data):
        if data[i] == 80 and data[i + 1] == 18:
            found.append(i + 2)
        i += max(data[i + 1], 2)
    if len(found) != 1:
        return False
    at = found[0]
    zeroed = data[:at] + bytes(16) + data[at + 16 :]
    return hmac.compare_digest(hmac.new(secret, zeroed, hashlib.md5).digest(), data[at : at + 16])


def reveal_password(data: bytes, secret: bytes) -> bytes:
    """Undo RFC 2865 section 5.2 hiding of the request's User-Password."""
    i = 20
    while i < len(data):
        if data[i] == 2:
            hidden = data[i + 2 : i + data[i + 1]]
            out, previous = bytearray(), data[4:20]
            for j in range(0, len(hidden), 16):
                pad = hashlib.md5(secret + previous).digest()
                out += bytes(a ^ b for a, b in zip(hidden[j : j + 16], pad, strict=True))
                previous = hidden[j : j + 16]
            return bytes(out).rstrip(b"\0")
        i += data[i + 1]
    return b""


@dataclass
class FakeRadius:
    """One fake server; ``requests`` collects every datagram it received."""

    secret: bytes
    mode: str
    attributes: Sequence[tuple[int, bytes]] = ()
    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    requests: list[bytes] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    port: int = 0

    def serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.requests.append(data)
            for sock, datagram in self.answers(data):
                sock.sendto(datagram, peer)
                if sock is not self.sock:
                    sock.close()

    def answers(self, data: bytes) -> list[tuple[socket.socket, bytes]]:
        ident, auth = data[1], data[4:20]

        def reply(code: int = ACCEPT, **kw: bool) -> bytes:
            return encode_reply(code, ident, auth, self.secret, self.attributes, **kw)

        good = reply()
        other_port = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other_port.bind(("127.0.0.1", 0))
        other_address = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other_address.bind(("127.0.0.2", self.port))
        junk = [
            (self.sock, reply(message_authenticator=False)),
            (self.sock, reply(corrupt_message_authenticator=True)),
            (self.sock, reply(corrupt_response_authenticator=True)),
            (self.sock, encode_reply(ACCEPT, (ident + 1) % 256, auth, self.secret, self.attributes)),
            (other_port, good),
            (other_address, good),
        ]
        table: dict[str, list[tuple[socket.socket, bytes]]] = {
            "accept": [(self.sock, good)],
            "reject": [(self.sock, reply(REJECT))],
            "challenge": [(self.sock, reply(CHALLENGE))],
            "silent": [],
            "no-message-authenticator": [junk[0]],
            "wrong-message-authenticator": [junk[1]],
            "wrong-response-authenticator": [junk[2]],
            "wrong-identifier": [junk[3]],
            "other-port": [junk[4]],
            "other-address": [junk[5]],
            "junk-then-accept": [*junk, (self.sock, good)],
            "flood": [junk[0]] * 10,
        }
        chosen = table[self.mode]
        for sock in (other_port, other_address):
            if all(sock is not s for s, _ in chosen):
                sock.close()
        return chosen


@contextmanager
def fake_radius(
    secret: bytes, mode: str, attributes: Sequence[tuple[int, bytes]] = ()
) -> Iterator[FakeRadius]:
    """Run a :class:`FakeRadius` on 127.0.0.1 (a random port) in a thread while the block runs."""
    assert mode in MODES, mode
    server = FakeRadius(secret, mode, attributes)
    server.sock.bind(("127.0.0.1", 0))
    server.port = server.sock.getsockname()[1]
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        thread.join(5)
        server.sock.close()
