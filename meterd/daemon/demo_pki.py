"""A demo PKI for Modbus/TCP Security in the embedded default, made on first start.

Like the demo accounts, nothing secret ships with meterd: the first start
creates, in ``demo-pki/`` below the state directory (0700, keys 0600),

* ``ca.pem`` / ``ca-key.pem``: a demo certificate authority,
* ``meter.pem`` / ``meter-key.pem``: the meter's server certificate for
  127.0.0.1 and ``localhost``, which the embedded ``[modbus.tls]`` uses,
* ``<application>-<role>.pem`` / ``-key.pem``: one client certificate per role
  of each policy application that has no credential of its own, carrying that
  role in the Modbus/TCP Security role extension.

The client certificates' fingerprints are filled into the application's
``cert_fingerprints`` whenever the configured policy is read, so a reload
keeps them, and into a pushed policy from the certificates that exist (a push
issues nothing).  A file that is missing or expired is issued again; if the
CA itself is replaced, everything it signed is issued again with it.

``checked.json`` records, for each certificate issued or verified here, a
digest of its file, its key's and its CA's, its expiry and its fingerprint.
A later start whose files still have those digests knows the outcome of the
checks without parsing a certificate, loading a key or verifying a signature
(which would keep about 1 MiB more of the cryptography library resident, on
every start); any other change to the files means the full checks again.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meterd.channels.modbus.certificates import MAX_ROLE_LENGTH, ROLE_OID
from meterd.fsutil import atomic_write, private_dir
from meterd.policy.loader import NAME_PATTERN
from meterd.statedir import DEMO_PKI

DIRECTORY = DEMO_PKI.name
CHECKED = "checked.json"
_UTF8_STRING = 0x0C
_CA_DAYS = 3650
_LEAF_DAYS = 825  # the longest lifetime common TLS clients still accept for a leaf


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _role_extension(role: str) -> x509.UnrecognizedExtension:
    raw = role.encode()
    if not 0 < len(raw) <= MAX_ROLE_LENGTH:
        raise ValueError(f"role {role!r} does not fit the role extension")
    return x509.UnrecognizedExtension(ROLE_OID, bytes((_UTF8_STRING, len(raw))) + raw)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _usable(path: Path) -> x509.Certificate | None:
    """The certificate in ``path`` if it exists, parses and is valid for at least another day."""
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    if certificate.not_valid_after_utc < _now() + datetime.timedelta(days=1):
        return None
    return certificate


def _signed_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    """True if ``ca`` signed ``certificate``; a renewed CA has the same name, so the name proves nothing."""
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _save(cert_path: Path, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    # Key before certificate: a certificate on disk always has its key beside it.
    key_path = _key_path(cert_path)
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    atomic_write(key_path, pem_key, mode=0o600)
    atomic_write(cert_path, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)


def _key_path(cert_path: Path) -> Path:
    return cert_path.with_name(cert_path.stem + "-key.pem")


def fingerprint(certificate: x509.Certificate) -> str:
    """The ``sha256:<hex>`` fingerprint a policy names a certificate by."""
    return "sha256:" + hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _digest(*paths: Path) -> str | None:
    """One digest of the files' contents, or None if one cannot be read."""
    try:
        parts = [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]
    except OSError:
        return None
    return hashlib.sha256(" ".join(parts).encode()).hexdigest()


class _Checked:
    """``checked.json``: what the full checks concluded about files that have not changed since.

    An entry holds the digest of a certificate, its key and its CA's
    certificate (for the CA: itself and its key), its expiry and its
    fingerprint.  It speaks for the files only while they have that digest.
    """

    def __init__(self, directory: Path) -> None:
        self._path = directory / CHECKED
        self._entries: dict[str, dict[str, Any]] | None = None

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            try:
                loaded = json.loads(self._path.read_bytes())
            except (OSError, ValueError):
                loaded = {}
            self._entries = loaded if isinstance(loaded, dict) else {}
        return self._entries

    def fingerprint(self, name: str, digest: str | None) -> str | None:
        """The recorded fingerprint of ``name`` if its files have ``digest`` and it lasts another day."""
        entry = self._load().get(name)
        if digest is None or not isinstance(entry, dict) or entry.get("digest") != digest:
            return None
        not_after, found = entry.get("not_after"), entry.get("fingerprint")
        if not isinstance(not_after, int | float) or not isinstance(found, str):
            return None
        if not_after < (_now() + datetime.timedelta(days=1)).timestamp():
            return None
        return found

    def record(self, name: str, digest: str | None, certificate: x509.Certificate) -> None:
        """Record that the files of ``name`` (with ``digest``) passed the full checks."""
        if digest is None:
            return
        entry = {
            "digest": digest,
            "not_after": certificate.not_valid_after_utc.timestamp(),
            "fingerprint": fingerprint(certificate),
        }
        entries = self._load()
        if entries.get(name) != entry:
            entries[name] = entry
            atomic_write(self._path, json.dumps(entries, indent=1, sort_keys=True).encode(), mode=0o600)


class DemoPki:
    """The demo certificate authority and the certificates it issued, in one directory."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / DIRECTORY
        self.ca_cert = self.directory / "ca.pem"
        self.meter_cert = self.directory / "meter.pem"
        #: True once this object has written any file.
        self.created = False
        self._ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None
        self._checked = _Checked(self.directory)

    def _ca_digest(self) -> str | None:
        return _digest(self.ca_cert, _key_path(self.ca_cert))

    def _leaf_digest(self, cert_path: Path) -> str | None:
        return _digest(cert_path, _key_path(cert_path), self.ca_cert)

    def _known(self, cert_path: Path) -> str | None:
        """The fingerprint of ``cert_path`` if its files and its CA's are as the full checks left them."""
        if self._checked.fingerprint(self.ca_cert.name, self._ca_digest()) is None:
            return None
        return self._checked.fingerprint(cert_path.name, self._leaf_digest(cert_path))

    def _existing_authority(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
        """The CA on disk if it is usable and its key matches; reads only."""
        if self._ca is not None:
            return self._ca
        certificate = _usable(self.ca_cert)
        if certificate is None:
            return None
        try:
            key = serialization.load_pem_private_key(_key_path(self.ca_cert).read_bytes(), None)
        except (OSError, ValueError):
            return None
        if isinstance(key, ec.EllipticCurvePrivateKey) and key.public_key() == certificate.public_key():
            self._ca = (certificate, key)
            return self._ca
        return None

    def _record(self, cert_path: Path, certificate: x509.Certificate) -> None:
        """Record the CA and ``cert_path`` as checked (both just passed the full checks or were issued)."""
        if self._ca is not None:
            self._checked.record(self.ca_cert.name, self._ca_digest(), self._ca[0])
        self._checked.record(cert_path.name, self._leaf_digest(cert_path), certificate)

    def _authority(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        existing = self._existing_authority()
        if existing is not None:
            return existing
        private_dir(self.directory)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meterd demo"),
                x509.NameAttribute(NameOID.COMMON_NAME, "meterd demo CA"),
            ]
        )
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _save(self.ca_cert, certificate, key)
        self.created = True
        self._ca = (certificate, key)
        return self._ca

    def _issue(self, cert_path: Path, common_name: str, *, role: str | None, server: bool) -> str:
        """The fingerprint of ``cert_path``, issued (again) if missing, expiring or from another CA."""
        known = self._known(cert_path)
        if known is not None:
            return known
        ca, ca_key = self._authority()
        existing = _usable(cert_path)
        if existing is not None and _signed_by(existing, ca) and _key_path(cert_path).exists():
            self._record(cert_path, existing)
            return fingerprint(existing)
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if server:
            names: list[x509.GeneralName] = [
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.DNSName("localhost"),
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        if role is not None:
            builder = builder.add_extension(_role_extension(role), critical=False)
        certificate = builder.sign(ca_key, hashes.SHA256())
        _save(cert_path, certificate, key)
        self.created = True
        self._record(cert_path, certificate)
        return fingerprint(certificate)

    def ensure_meter(self) -> Path:
        """Make sure the CA and the meter's server certificate exist; return the directory."""
        self._issue(self.meter_cert, "meterd demo meter", role=None, server=True)
        return self.directory

    def client(self, application: str, role: str) -> str:
        """The fingerprint of the demo client certificate of ``application`` acting as ``role``."""
        return self._issue(self.directory / f"{application}-{role}.pem", application, role=role, server=False)

    def existing_client(self, application: str, role: str) -> str | None:
        """The fingerprint of the existing, usable demo client certificate of ``application`` as ``role``.

        Reads only: what it checks is not recorded either.
        """
        cert_path = self.directory / f"{application}-{role}.pem"
        known = self._known(cert_path)
        if known is not None:
            return known
        ca = self._existing_authority()
        certificate = _usable(cert_path)
        if ca is None or certificate is None or not _signed_by(certificate, ca[0]):
            return None
        return fingerprint(certificate) if _key_path(cert_path).exists() else None


def ensure_demo_meter_certificate(state_dir: Path) -> Path | None:
    """Make sure the demo CA and the meter's server certificate exist and are current.

    Returns:
        The demo PKI directory if a file in it was written just now, else None.
    """
    pki = DemoPki(state_dir)
    pki.ensure_meter()
    return pki.directory if pki.created else None


def apply_demo_pki(data: dict[str, Any], state_dir: Path, *, issue: bool = True) -> Path | None:
    """Give each credential-less application in parsed policy ``data`` demo client certificates (in place).

    The meter's own certificate is :func:`ensure_demo_meter_certificate`'s,
    which the daemon calls on every start.

    Args:
        data: A parsed policy.
        state_dir: The daemon's state directory.
        issue: Issue missing certificates (the configured policy); if False (a
            pushed policy), only fill in those that exist and write nothing.

    Returns:
        The demo PKI directory if any file in it was written just now, else None.
    """
    pki = DemoPki(state_dir)
    applications = data.get("applications", {})
    if not isinstance(applications, dict):
        return None  # the loader reports it
    for name, entry in sorted(applications.items()):
        if not isinstance(entry, dict) or entry.get("enabled", True) is False:
            continue
        if entry.get("cert_fingerprints") or entry.get("ssh_keys"):
            continue
        roles = entry.get("roles", [])
        # Names become file names: anything the loader would refuse is left for it to report.
        if not NAME_PATTERN.match(name) or not isinstance(roles, list):
            continue
        if not all(isinstance(r, str) and NAME_PATTERN.match(r) for r in roles):
            continue
        if issue:
            entry["cert_fingerprints"] = [pki.client(name, role) for role in roles]
            continue
        found = [c for c in (pki.existing_client(name, role) for role in roles) if c is not None]
        if found:
            entry["cert_fingerprints"] = found
    return pki.directory if pki.created else None
