"""Structural checks of a PEM certificate, with the standard library only.

A certificate is accepted when the text holds exactly one ``CERTIFICATE``
block whose base64 body decodes strictly and whose DER parses as an X.509
certificate (see :mod:`meterd.meter.der`).  Its identity is the SHA-256 of
the DER, the fingerprint every tool shows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import textwrap

from meterd.meter.der import CertificateFields, read_certificate
from meterd.meter.errors import CertificateError
from meterd.record import record

MAX_PEM_BYTES = 16 * 1024
_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


@record
class ParsedCertificate:
    """A certificate that passed the structural checks.

    Attributes:
        der: The DER encoding.
        fingerprint: Hex SHA-256 of ``der``.
        fields: Names and validity read from the certificate.

    """

    der: bytes
    fingerprint: str
    fields: CertificateFields

    @property
    def pem(self) -> bytes:
        """The certificate re-encoded as canonical PEM (64-column lines)."""
        body = "\n".join(textwrap.wrap(base64.b64encode(self.der).decode("ascii"), 64))
        return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n".encode("ascii")


def parse_pem_certificate(pem: bytes) -> ParsedCertificate:
    """Check a PEM certificate and return its DER, fingerprint and fields.

    Raises:
        CertificateError: The text is too large, not ASCII, holds a private
            key, holds no or several blocks or something other than a
            certificate, or the certificate is malformed.

    """
    if len(pem) > MAX_PEM_BYTES:
        raise CertificateError(f"certificate larger than {MAX_PEM_BYTES} bytes")
    try:
        text = pem.decode("ascii")
    except UnicodeDecodeError as e:
        raise CertificateError("certificate is not PEM text") from e
    blocks = _BLOCK.findall(text)
    labels = [label for label, _ in blocks]
    if any("PRIVATE KEY" in label for label in labels):
        # Installing a key where certificates are listed would expose it.
        raise CertificateError("refusing a private key: install the certificate only")
    if labels != ["CERTIFICATE"]:
        found = ", ".join(labels) or "no PEM block"
        raise CertificateError(f"expected exactly one CERTIFICATE block, found {found}")
    if _BLOCK.sub("", text).strip():
        raise CertificateError("unexpected text outside the CERTIFICATE block")
    body = "".join(blocks[0][1].split())
    try:
        der = base64.b64decode(body, validate=True)
    except binascii.Error as e:
        raise CertificateError("certificate body is not valid base64") from e
    fields = read_certificate(der)
    return ParsedCertificate(der=der, fingerprint=hashlib.sha256(der).hexdigest(), fields=fields)
