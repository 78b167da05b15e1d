"""Modbus/TCP Security: the server's TLS context and what a client certificate says.

The TLS layer (OpenSSL) verifies the chain to the configured CA and the
validity period; this module only reads an already verified certificate: its
SHA-256 fingerprint (which names the application in the policy) and its role,
carried in the extension 1.3.6.1.4.1.50316.802.1 as a DER UTF8String.  A
missing, duplicated or malformed role extension is the NULL role.
"""

from __future__ import annotations

import hashlib
import ssl

from cryptography import x509
from cryptography.x509.oid import NameOID

from meterd.channels.modbus.config import TlsConfig
from meterd.channels.modbus.tls_context import build_server_context
from meterd.errors import ChannelError
from meterd.record import record

ROLE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.50316.802.1")
#: How a refused certificate, key or CA file begins its message.
CANNOT_LOAD = "modbus: cannot load the TLS certificate, key or CA"
_UTF8_STRING = 0x0C
MAX_ROLE_LENGTH = 64


@record
class ClientIdentity:
    """What a verified client certificate claims.

    Attributes:
        fingerprint: ``sha256:<hex>`` of the certificate's DER.
        role: The role extension's text, or None (the NULL role).
        common_name: The subject's common name, or empty.
    """

    fingerprint: str
    role: str | None
    common_name: str


def _utf8_string(der: bytes) -> str | None:
    """Decode a DER UTF8String of short or long definite length; None if it is anything else."""
    if len(der) < 2 or der[0] != _UTF8_STRING:
        return None
    length, offset = der[1], 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 2 or len(der) < 2 + size:
            return None
        length, offset = int.from_bytes(der[2 : 2 + size], "big"), 2 + size
    if len(der) != offset + length or not 0 < length <= MAX_ROLE_LENGTH:
        return None
    try:
        return der[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def identify(der: bytes) -> ClientIdentity:
    """Read the fingerprint, role and common name of a verified client certificate."""
    fingerprint = "sha256:" + hashlib.sha256(der).hexdigest()
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError:
        return ClientIdentity(fingerprint, None, "")
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = names[0].value if names and isinstance(names[0].value, str) else ""
    try:
        extension = certificate.extensions.get_extension_for_oid(ROLE_OID)
    except (ValueError, x509.ExtensionNotFound, x509.DuplicateExtension):
        # cryptography refuses a certificate with duplicate extensions here: NULL role.
        return ClientIdentity(fingerprint, None, common_name[:MAX_ROLE_LENGTH])
    role = None
    if isinstance(extension.value, x509.UnrecognizedExtension):
        role = _utf8_string(extension.value.value)
    return ClientIdentity(fingerprint, role, common_name[:MAX_ROLE_LENGTH])


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """Return the server's TLS context: TLS 1.2 or later, client certificate required.

    Raises:
        ChannelError: The certificate, key or CA file is missing or unusable.
    """
    if tls.cert is None or tls.key is None or tls.ca is None:
        raise ChannelError("modbus: Modbus/TCP Security needs tls.cert, tls.key and tls.ca")
    try:
        return build_server_context(str(tls.cert), str(tls.key), str(tls.ca))
    except (OSError, ssl.SSLError) as e:
        raise ChannelError(f"{CANNOT_LOAD}: {e}") from e
