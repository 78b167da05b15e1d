"""Prompt TCP acknowledgements while a client logs in, so its Nagle algorithm never waits on them.

The OpenSSH client keeps Nagle's algorithm on until its session starts, and
twice in a login it writes two packets without waiting for an answer in
between: its ``KEXINIT`` after its version line (when the two leave
separately) and ``SERVICE_REQUEST`` after ``NEWKEYS``.  Its kernel holds the
second packet until the first is acknowledged.  The server's kernel has just
answered the client's previous packet, so it is in interactive ("ping-pong")
mode, where it delays the acknowledgement of a packet it does not answer by up
to its delayed-ACK timeout (40 ms on Linux) in the hope of sending it with
data.  Each login waited for that timeout once or twice (13, 53 or 93 ms).

``TCP_NODELAY`` (which asyncio sets on every accepted socket) does not help:
the held packet is the client's.  Linux's ``TCP_QUICKACK`` leaves ping-pong
mode, so the next packet is acknowledged at once, until the server's next
answer enters it again; :class:`PromptAcks` therefore sets it again after each
chunk of input has been handled (every answer to it already sent), until
authentication completes.  From then on OpenSSH sends nothing without an
answer before its session turns Nagle off, so later traffic (SFTP transfers)
keeps the kernel's usual delayed acknowledgements and pays no system call.
"""

from __future__ import annotations

import contextlib
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asyncssh.connection import SSHConnection

#: The option, or None where the platform has none (then this module does nothing).
TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class PromptAcks:
    """Acknowledge each packet of one connection at once, from construction until :meth:`stop`.

    asyncssh offers no hook for raw input, so the connection's
    ``data_received`` is wrapped on this instance only (the class and other
    connections are untouched); :meth:`stop` removes the wrapper.

    Args:
        conn: The accepted connection, before it has received anything.
    """

    def __init__(self, conn: SSHConnection) -> None:
        self._conn = conn
        sock = conn.get_extra_info("socket")
        self._sock: socket.socket | None = None
        if TCP_QUICKACK is not None and sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            self._sock = sock
            self._received = conn.data_received
            # An instance attribute: asyncio's transport looks the method up on every read.
            conn.data_received = self._data_received  # type: ignore[method-assign]
            self._acknowledge_promptly()

    @property
    def active(self) -> bool:
        """True while this connection's packets are acknowledged at once."""
        return self._sock is not None

    def stop(self) -> None:
        """Give the connection back to the kernel's delayed acknowledgements."""
        if self._sock is not None:
            self._sock = None
            del self._conn.data_received  # the class's method again

    def _data_received(self, data: bytes, datatype: int | None = None) -> None:
        self._received(data, datatype)
        self._acknowledge_promptly()

    def _acknowledge_promptly(self) -> None:
        if self._sock is None or TCP_QUICKACK is None:
            return
        # A closing socket may refuse: the transport reports that, and a late ACK harms nothing.
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
