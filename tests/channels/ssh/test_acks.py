"""A logging-in client's packets are acknowledged at once (meterd/channels/ssh/acks.py).

Whether the kernel would delay an acknowledgement is the socket's state, not a
timing: Linux reports ``TCP_QUICKACK`` as 0 while a socket is in interactive
("ping-pong") mode, where it delays the acknowledgement of a packet it does not
answer by up to 40 ms, and the OpenSSH client's Nagle algorithm then holds its
next packet for as long.  Read on the server's side of a real connection, from
the server's loop once it has answered the client's version line.
"""

from __future__ import annotations

import os
import socket
import struct

import pytest

from tests.channels.ssh.harness import Server

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="Linux's TCP_QUICKACK")


async def quickack_of_peer(peer: tuple[str, int]) -> int:
    """``TCP_QUICKACK`` of this process's TCP socket whose peer is ``peer`` (the server's side)."""
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            dup = os.dup(int(name))
        except OSError:
            continue  # the listing's own descriptor, or one closed meanwhile
        with socket.socket(fileno=dup) as sock:
            if sock.family != socket.AF_INET or sock.type != socket.SOCK_STREAM:
                continue
            try:
                if sock.getpeername() != peer:
                    continue
            except OSError:
                continue  # a listening socket
            return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK)
    raise AssertionError(f"no socket with peer {peer}")


def read_kexinit(client: socket.socket) -> bytes:
    """Read the server's version line and its first binary packet (KEXINIT)."""
    data = b""
    while b"\r\n" not in data:
        chunk = client.recv(4096)
        assert chunk, "the server closed the connection"
        data += chunk
    version, _, rest = data.partition(b"\r\n")
    assert version.startswith(b"SSH-2.0-")
    while len(rest) < 4 or len(rest) < 4 + struct.unpack(">I", rest[:4])[0]:
        chunk = client.recv(4096)
        assert chunk, "the server closed the connection"
        rest += chunk
    return rest[5:6]  # the message number, after the length and the padding length


def test_an_answered_client_packet_leaves_the_next_one_acknowledged_at_once(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        client.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n")
        assert read_kexinit(client) == b"\x14"  # SSH_MSG_KEXINIT: the answer to our version line
        # The answer went out right after our line arrived, which puts a socket in ping-pong mode;
        # by the time the loop runs this, the server has handled our line completely.
        assert server.call(quickack_of_peer(client.getsockname())) == 1
