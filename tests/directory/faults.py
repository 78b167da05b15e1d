"""Directory servers that misbehave, on 127.0.0.1, for the tests that every login ends within its budget.

Each runs in its own thread and is closed by :meth:`FaultServer.close`.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

#: LDAP's StartTLS extended operation.
START_TLS_OID = b"1.3.6.1.4.1.1466.20037"


def _start_tls_response(request: bytes) -> bytes:
    """A success ExtendedResponse to a StartTLS request, echoing its message id."""
    # request: 30 len 02 01 <id> 77 ...   (ids below 128 are one byte: ldap3 starts at 1)
    message_id = request[4]
    name = b"\x8a" + bytes([len(START_TLS_OID)]) + START_TLS_OID
    body = b"\x0a\x01\x00\x04\x00\x04\x00" + name
    op = b"\x78" + bytes([len(body)]) + body
    inner = b"\x02\x01" + bytes([message_id]) + op
    return b"\x30" + bytes([len(inner)]) + inner


class FaultServer:
    """A listener whose connections are handled by ``behave(conn)`` in a thread each.

    Args:
        behave: What to do with each accepted connection (it is closed afterwards).
        host: The loopback address to listen on.
    """

    def __init__(self, behave: Callable[[socket.socket], None] | None, host: str = "127.0.0.1") -> None:
        self._sock = socket.create_server((host, 0))
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._behave = behave
        if behave is not None:
            threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        assert self._behave is not None
        with contextlib.suppress(OSError):
            self._behave(conn)

    def wait(self) -> None:
        """Block until the server is closed (a stall)."""
        self._stop.wait(60)

    def close(self) -> None:
        self._stop.set()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()
        self._sock.close()


def silent() -> FaultServer:
    """The kernel accepts connections (backlog), nothing ever reads or answers."""
    return FaultServer(None)


def tls_stall() -> FaultServer:
    """Reads the TLS ClientHello and never answers it."""
    server: FaultServer

    def behave(conn: socket.socket) -> None:
        conn.recv(4096)
        server.wait()

    server = FaultServer(behave)
    return server


def start_tls_stall() -> FaultServer:
    """Accepts StartTLS, then never takes part in the TLS handshake."""
    server: FaultServer

    def behave(conn: socket.socket) -> None:
        request = conn.recv(4096)
        if START_TLS_OID in request:
            conn.sendall(_start_tls_response(request))
        conn.recv(4096)
        server.wait()

    server = FaultServer(behave)
    return server


def tls_server(cert: Path, key: Path) -> FaultServer:
    """Completes TLS with ``cert`` (the client should refuse it), then waits."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server: FaultServer

    def behave(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(4096)
            server.wait()

    server = FaultServer(behave)
    return server


def killing_proxy(target_port: int, kill: Callable[[], None], after_chunks: int = 2) -> FaultServer:
    """Relays to ``target_port`` and calls ``kill`` once the server has sent ``after_chunks`` chunks."""

    def behave(conn: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", target_port))
        killed = threading.Event()

        def pump_up() -> None:
            with contextlib.suppress(OSError):
                while data := conn.recv(65536):
                    upstream.sendall(data)

        threading.Thread(target=pump_up, daemon=True).start()
        chunks = 0
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                conn.sendall(data)
                chunks += 1
                if chunks >= after_chunks and not killed.is_set():
                    killed.set()
                    kill()
        conn.close()
        upstream.close()

    return FaultServer(behave)


def relay(host: str, target_port: int) -> FaultServer:
    """Relays ``host``'s free port to ``target_port`` there, until closed (then: connection refused).

    On the server's own address, so its certificate (which names the address) still matches.
    """

    def behave(conn: socket.socket) -> None:
        with socket.create_connection((host, target_port)) as upstream:

            def pump_up() -> None:
                with contextlib.suppress(OSError):
                    while data := conn.recv(65536):
                        upstream.sendall(data)
                with contextlib.suppress(OSError):
                    upstream.shutdown(socket.SHUT_WR)

            threading.Thread(target=pump_up, daemon=True).start()
            with contextlib.suppress(OSError):
                while data := upstream.recv(65536):
                    conn.sendall(data)
        conn.close()

    return FaultServer(behave, host)


def _message(data: bytes) -> tuple[int, int, int]:
    """(message id, operation tag, total length) of the LDAP message at the start of ``data``."""
    size = data[1]
    offset = 2
    if size & 0x80:
        count = size & 0x7F
        size = int.from_bytes(data[2 : 2 + count], "big")
        offset += count
    # messageID is INTEGER 02 01 <id> (ldap3 numbers from 1; a test never reaches 128)
    return data[offset + 2], data[offset + 3], offset + size


def _ldap(message_id: int, op: bytes) -> bytes:
    inner = b"\x02\x01" + bytes([message_id]) + op
    return b"\x30" + bytes([len(inner)]) + inner


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag, len(value)]) + value


def unwilling_user_bind(cert: Path, key: Path, user_dn: str) -> FaultServer:
    """An LDAPS server that accepts the service bind and finds ``user_dn``, then answers
    the user's own bind with ``unwillingToPerform`` (53), as a directory does for an
    account it will not let in (not a wrong password, but a refusal all the same)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def behave(conn: socket.socket) -> None:
        binds = 0
        with context.wrap_socket(conn, server_side=True) as tls:
            pending = b""
            while chunk := tls.recv(65536):
                pending += chunk
                while len(pending) >= 2 and len(pending) >= _message(pending)[2]:
                    message_id, op, length = _message(pending)
                    pending = pending[length:]
                    if op == 0x60:  # BindRequest
                        binds += 1
                        code = 0 if binds == 1 else 53
                        tls.sendall(
                            _ldap(message_id, _tlv(0x61, b"\x0a\x01" + bytes([code]) + b"\x04\x00\x04\x00"))
                        )
                    elif op == 0x63:  # SearchRequest: one entry, then done
                        entry = _tlv(0x64, _tlv(0x04, user_dn.encode()) + b"\x30\x00")
                        tls.sendall(_ldap(message_id, entry))
                        tls.sendall(_ldap(message_id, _tlv(0x65, b"\x0a\x01\x00\x04\x00\x04\x00")))
                    else:
                        return

    return FaultServer(behave)
