"""Certificates on the simulated meter (meterd/meter/pem.py, der.py): install, description, the bounded store, rejection."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from meterd.meter.der import read_certificate
from meterd.meter.errors import CertificateError
from meterd.meter.simulation.meter import MAX_CERTIFICATES, SimulatedMeter
from tests.certs import make_certificate, pem_of
from tests.meter.simulation.helpers import FakeClock


def test_a_certificate_is_installed_and_described(meter: SimulatedMeter, clock: FakeClock) -> None:
    cert = make_certificate()
    info = meter.install_certificate(pem_of(cert))
    assert info.fingerprint == cert.fingerprint(hashes.SHA256()).hex()
    assert info.subject == cert.subject.rfc4514_string() == "CN=scada-1,O=Utility,C=DE"
    assert info.issuer == cert.issuer.rfc4514_string()
    assert info.not_before == cert.not_valid_before_utc.timestamp()
    assert info.not_after == cert.not_valid_after_utc.timestamp()
    assert info.installed_at == clock.now
    stored = meter.file_area / "certs" / f"{info.fingerprint}.pem"
    assert x509.load_pem_x509_certificate(stored.read_bytes()) == cert
    assert meter.certificates() == (info,)
    assert meter.status().certificate_count == 1


def test_names_with_special_characters_render_as_rfc_4514(meter: SimulatedMeter) -> None:
    cert = make_certificate(common_name='Meter, "North" + 1', organisation="#Grid Ops ")
    assert meter.install_certificate(pem_of(cert)).subject == cert.subject.rfc4514_string()


def test_validity_past_2049_is_read_from_generalized_time(meter: SimulatedMeter) -> None:
    end = dt.datetime(2061, 6, 30, 12, 0, tzinfo=dt.UTC)
    info = meter.install_certificate(pem_of(make_certificate(not_after=end)))
    assert info.not_after == end.timestamp()


def test_a_certificate_cannot_be_installed_twice(meter: SimulatedMeter) -> None:
    pem = pem_of(make_certificate())
    meter.install_certificate(pem)
    with pytest.raises(CertificateError, match="already installed"):
        meter.install_certificate(pem)
    assert len(meter.certificates()) == 1


def test_certificates_are_listed_oldest_first_and_removed_by_fingerprint_prefix(
    meter: SimulatedMeter,
) -> None:
    first = meter.install_certificate(pem_of(make_certificate("one")))
    second = meter.install_certificate(pem_of(make_certificate("two")))
    assert meter.certificates() == (first, second)
    removed = meter.remove_certificate(first.fingerprint[:12].upper())
    assert removed == first
    assert meter.certificates() == (second,)
    assert not (meter.file_area / "certs" / first.file_name).exists()
    assert (meter.file_area / "certs" / second.file_name).exists()


def test_removing_a_certificate_needs_an_unambiguous_fingerprint(meter: SimulatedMeter) -> None:
    info = meter.install_certificate(pem_of(make_certificate()))
    with pytest.raises(CertificateError, match="at least 8"):
        meter.remove_certificate(info.fingerprint[:4])
    with pytest.raises(CertificateError, match="no installed certificate"):
        meter.remove_certificate("00" * 32 if not info.fingerprint.startswith("00") else "ff" * 32)
    assert meter.certificates() == (info,)


def test_the_certificate_store_is_bounded(meter: SimulatedMeter) -> None:
    for n in range(MAX_CERTIFICATES):
        meter.install_certificate(pem_of(make_certificate(f"c{n}")))
    with pytest.raises(CertificateError, match="at most"):
        meter.install_certificate(pem_of(make_certificate("one-too-many")))


def private_key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def bad_certificates() -> Iterator[tuple[bytes, str]]:
    good = pem_of(make_certificate())
    der = make_certificate().public_bytes(serialization.Encoding.DER)
    yield b"not a certificate", "no PEM block"
    yield private_key_pem(), "private key"
    yield good + pem_of(make_certificate("second")), "exactly one"
    yield good.replace(b"CERTIFICATE", b"PUBLIC KEY"), "found PUBLIC KEY"
    yield good.replace(b"MII", b"M!I", 1), "base64"
    yield b"junk before\n" + good, "outside"
    yield "\N{BLACK STAR}".encode() + good, "not PEM text"
    for broken in (der[:-10], der + b"\0", b"\x30\x03\x02\x01\x01", b"\x31" + der[1:]):
        body = base64.encodebytes(broken)
        yield b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n", "certificate"


@pytest.mark.parametrize(("pem", "message"), list(bad_certificates()))
def test_a_malformed_certificate_is_rejected(meter: SimulatedMeter, pem: bytes, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        meter.install_certificate(pem)
    assert meter.certificates() == ()
    assert list((meter.file_area / "certs").iterdir()) == []


@settings(max_examples=200)
@given(junk=st.binary(max_size=300))
def test_random_der_is_rejected_cleanly(junk: bytes) -> None:
    with pytest.raises(CertificateError):
        read_certificate(junk)


VALID_DER = make_certificate().public_bytes(serialization.Encoding.DER)


@settings(max_examples=300)
@given(position=st.integers(min_value=0, max_value=len(VALID_DER) - 1), value=st.integers(0, 255))
def test_a_damaged_certificate_is_read_or_rejected_never_crashes(position: int, value: int) -> None:
    damaged = VALID_DER[:position] + bytes([value]) + VALID_DER[position + 1 :]
    try:
        fields = read_certificate(damaged)
    except CertificateError:
        return
    assert isinstance(fields.subject, str)
