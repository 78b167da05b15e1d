"""Just enough DER to read an X.509 certificate's names and validity.

The package takes no cryptography dependency, so a certificate is checked
structurally: the DER must parse as Certificate ::= SEQUENCE { tbsCertificate,
signatureAlgorithm, signature } with nothing trailing, and the names and the
validity are read from tbsCertificate.  Signatures are not verified; whoever
uses the certificate for TLS does that.
"""

from __future__ import annotations

import datetime as dt

from meterd.meter.errors import CertificateError
from meterd.record import record

_SEQUENCE, _SET, _INTEGER, _BIT_STRING, _OID = 0x30, 0x31, 0x02, 0x03, 0x06
_UTC_TIME, _GENERALIZED_TIME, _EXPLICIT_VERSION = 0x17, 0x18, 0xA0
_STRING_CODECS = {
    0x0C: "utf-8",
    0x13: "ascii",
    0x14: "latin-1",
    0x16: "ascii",
    0x1E: "utf-16-be",
    0x1C: "utf-32-be",
}
_ATTRIBUTE_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "STREET",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
_RFC4514_SPECIALS = ',+"\\<>;'


@record
class CertificateFields:
    """What the meter records from a certificate's tbsCertificate.

    Attributes:
        subject: Subject name in RFC 4514 form.
        issuer: Issuer name in RFC 4514 form.
        not_before: Start of validity, POSIX seconds.
        not_after: End of validity, POSIX seconds.

    """

    subject: str
    issuer: str
    not_before: float
    not_after: float


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read one tag-length-value at ``pos``; return (tag, content start, content end)."""
    if pos + 2 > end:
        raise CertificateError("certificate DER is truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if tag & 0x1F == 0x1F:
        raise CertificateError("certificate DER uses an unsupported tag")
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        # DER forbids indefinite lengths; 4 length bytes already allow 4 GiB.
        if count == 0 or count > 4 or pos + count > end:
            raise CertificateError("certificate DER has a bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise CertificateError("certificate DER is truncated")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    items = []
    pos = start
    while pos < end:
        item = _tlv(data, pos, end)
        items.append(item)
        pos = item[2]
    return items


def _expect(item: tuple[int, int, int], tag: int, what: str) -> tuple[int, int, int]:
    if item[0] != tag:
        raise CertificateError(f"not an X.509 certificate: bad {what}")
    return item


def _oid(raw: bytes) -> str:
    if not raw or raw[-1] & 0x80:
        raise CertificateError("certificate has a malformed object identifier")
    arcs: list[int] = []
    value = 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def _escape(value: str) -> str:
    text = "".join(f"\\{c}" if c in _RFC4514_SPECIALS else c for c in value)
    if text.startswith(("#", " ")):
        text = "\\" + text
    if text.endswith(" "):
        text = text[:-1] + "\\ "
    return text


def _name(data: bytes, item: tuple[int, int, int]) -> str:
    """Render a Name as RFC 4514 does: last RDN first, ``+`` within an RDN."""
    rdns = []
    for rdn in _children(data, item[1], item[2]):
        _expect(rdn, _SET, "name")
        parts = []
        for attribute in _children(data, rdn[1], rdn[2]):
            _expect(attribute, _SEQUENCE, "name attribute")
            fields = _children(data, attribute[1], attribute[2])
            if len(fields) != 2:
                raise CertificateError("not an X.509 certificate: bad name attribute")
            oid = _oid(data[fields[0][1] : fields[0][2]])
            tag, start, end = fields[1]
            codec = _STRING_CODECS.get(tag)
            value = data[start:end].decode(codec, errors="replace") if codec else "#" + data[start:end].hex()
            parts.append(f"{_ATTRIBUTE_NAMES.get(oid, oid)}={_escape(value) if codec else value}")
        rdns.append("+".join(parts))
    return ",".join(reversed(rdns))


def _time(data: bytes, item: tuple[int, int, int]) -> float:
    tag, start, end = item
    text = data[start:end].decode("ascii", errors="replace")
    try:
        if tag == _UTC_TIME:
            moment = dt.datetime.strptime(text, "%y%m%d%H%M%SZ")
            # RFC 5280: two-digit years 50..99 are 19xx, 00..49 are 20xx.
            if moment.year >= 2050:
                moment = moment.replace(year=moment.year - 100)
        elif tag == _GENERALIZED_TIME:
            moment = dt.datetime.strptime(text, "%Y%m%d%H%M%SZ")
        else:
            raise CertificateError("not an X.509 certificate: bad validity time")
    except ValueError as e:
        raise CertificateError(f"certificate has a malformed validity time {text!r}") from e
    return moment.replace(tzinfo=dt.UTC).timestamp()


def read_certificate(der: bytes) -> CertificateFields:
    """Check the structure of a DER certificate and read its names and validity.

    Raises:
        CertificateError: The bytes are not a well-formed X.509 certificate.

    """
    try:
        outer = _expect(_tlv(der, 0, len(der)), _SEQUENCE, "certificate")
        if outer[2] != len(der):
            raise CertificateError("not an X.509 certificate: trailing data")
        parts = _children(der, outer[1], outer[2])
        if len(parts) != 3:
            raise CertificateError("not an X.509 certificate: wrong number of parts")
        tbs = _expect(parts[0], _SEQUENCE, "tbsCertificate")
        _expect(parts[1], _SEQUENCE, "signature algorithm")
        _expect(parts[2], _BIT_STRING, "signature")
        fields = _children(der, tbs[1], tbs[2])
        if fields and fields[0][0] == _EXPLICIT_VERSION:
            fields = fields[1:]
        if len(fields) < 6:
            raise CertificateError("not an X.509 certificate: tbsCertificate too short")
        _expect(fields[0], _INTEGER, "serial number")
        _expect(fields[1], _SEQUENCE, "signature algorithm")
        issuer = _name(der, _expect(fields[2], _SEQUENCE, "issuer"))
        validity = _children(der, *_expect(fields[3], _SEQUENCE, "validity")[1:])
        subject = _name(der, _expect(fields[4], _SEQUENCE, "subject"))
        _expect(fields[5], _SEQUENCE, "public key")
    except IndexError as e:
        raise CertificateError("certificate DER is truncated") from e
    if len(validity) != 2:
        raise CertificateError("not an X.509 certificate: bad validity")
    return CertificateFields(
        subject=subject, issuer=issuer, not_before=_time(der, validity[0]), not_after=_time(der, validity[1])
    )
