"""The Modbus/TCP Security server's TLS context, built by the standard library alone.

Imported, :func:`build_server_context` is how meterd builds the context.
Run as a script (``python -I -S tls_context.py CERT KEY CA``), it builds the
same context in a fresh interpreter and says whether it could: meterd checks
the files at start that way, so that its own process need not load OpenSSL's
TLS library before a client asks for it, and so that the check inherits no
lock another thread of meterd held (a forked child would).  It exits 0 when the
context builds, 1 with OpenSSL's or the system's message on standard output
when it does not; it imports nothing but the standard library.
"""

from __future__ import annotations

import ssl
import sys


def build_server_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    """Return the server context: TLS 1.2 or later, a client certificate verified against ``ca``.

    Raises:
        OSError: A file cannot be read.
        ssl.SSLError: OpenSSL refuses a file, or the key does not match the certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    # A renegotiation could swap the client certificate under an open session.
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=ca)
    return context


def _check(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: tls_context.py CERT KEY CA", file=sys.stderr)
        return 2
    try:
        build_server_context(*argv)
    except (OSError, ssl.SSLError) as e:
        sys.stdout.write(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_check(sys.argv[1:]))
