"""The embedded default's demo PKI: made on first start, kept, renewed, and usable over Modbus/TCP Security."""

from __future__ import annotations

import asyncio
import datetime
import shutil
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pymodbus.client import AsyncModbusTlsClient

from meterd.channels.modbus.certificates import identify
from meterd.daemon import demo_pki
from meterd.daemon.demo_pki import DIRECTORY, apply_demo_pki, ensure_demo_meter_certificate
from meterd.seclog import EventType, Query, read_records
from tests.daemon.conftest import ROOT, RunningDaemon, free_port, write_config

StartDaemon = Callable[[Path], RunningDaemon]
DEMAND_RESET = 100
TEST_MODE = 110


def policy_data() -> dict[str, Any]:
    return {
        "applications": {
            "scada": {"roles": ["viewer", "operator"]},
            "historian": {"roles": ["viewer"], "cert_fingerprints": ["sha256:" + "ab" * 32]},
            "retired": {"roles": ["viewer"], "enabled": False},
            "../escape": {"roles": ["viewer"]},
        }
    }


def fingerprints(data: dict[str, Any], app: str) -> list[str]:
    return list(data["applications"][app].get("cert_fingerprints", []))


def test_first_read_issues_certificates_and_fills_fingerprints(tmp_path: Path) -> None:
    data = policy_data()
    # The daemon's order: the meter's certificate on start, then the policy's applications.
    assert ensure_demo_meter_certificate(tmp_path) == tmp_path / DIRECTORY
    assert apply_demo_pki(data, tmp_path) == tmp_path / DIRECTORY
    pki = tmp_path / DIRECTORY
    assert pki.stat().st_mode & 0o777 == 0o700
    names = sorted(p.name for p in pki.iterdir())
    assert names == [
        "ca-key.pem",
        "ca.pem",
        "checked.json",
        "meter-key.pem",
        "meter.pem",
        "scada-operator-key.pem",
        "scada-operator.pem",
        "scada-viewer-key.pem",
        "scada-viewer.pem",
    ]
    for key in [*pki.glob("*-key.pem"), pki / "checked.json"]:
        assert key.stat().st_mode & 0o777 == 0o600, key
    # Each client certificate carries its role and is named in the policy by its fingerprint.
    issued = []
    for role in ("viewer", "operator"):
        der = x509.load_pem_x509_certificate((pki / f"scada-{role}.pem").read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
        identity = identify(der)
        assert identity.role == role
        assert identity.common_name == "scada"
        issued.append(identity.fingerprint)
    assert fingerprints(data, "scada") == issued
    # An application with its own credential, a disabled one and an unusable name are left alone.
    assert fingerprints(data, "historian") == ["sha256:" + "ab" * 32]
    assert fingerprints(data, "retired") == []
    assert fingerprints(data, "../escape") == []
    assert not (tmp_path / "escape-viewer.pem").exists()
    # The meter's certificate is for 127.0.0.1 and chains to the demo CA.
    meter = x509.load_pem_x509_certificate((pki / "meter.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())
    meter.verify_directly_issued_by(ca)
    names_of = meter.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in names_of.get_values_for_type(x509.IPAddress)}


def test_later_reads_keep_the_same_certificates(tmp_path: Path) -> None:
    first = policy_data()
    ensure_demo_meter_certificate(tmp_path)
    apply_demo_pki(first, tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / DIRECTORY).iterdir()}
    second = policy_data()
    assert apply_demo_pki(second, tmp_path) is None
    assert ensure_demo_meter_certificate(tmp_path) is None
    assert fingerprints(second, "scada") == fingerprints(first, "scada")
    assert {p.name: p.read_bytes() for p in (tmp_path / DIRECTORY).iterdir()} == before


def test_a_restart_with_unchanged_files_parses_no_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = policy_data()
    ensure_demo_meter_certificate(tmp_path)
    apply_demo_pki(first, tmp_path)

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("a certificate or key was parsed")

    # What the full checks use: with the files unchanged, checked.json answers instead.
    monkeypatch.setattr(x509, "load_pem_x509_certificate", refuse)
    monkeypatch.setattr(serialization, "load_pem_private_key", refuse)
    assert ensure_demo_meter_certificate(tmp_path) is None
    second, pushed = policy_data(), policy_data()
    assert apply_demo_pki(second, tmp_path) is None
    assert apply_demo_pki(pushed, tmp_path, issue=False) is None
    assert fingerprints(second, "scada") == fingerprints(pushed, "scada") == fingerprints(first, "scada")


def test_a_recorded_expiry_still_renews(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pki = tmp_path / DIRECTORY
    ensure_demo_meter_certificate(tmp_path)
    meter_before = (pki / "meter.pem").read_bytes()
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=830)  # past the leaf's 825 days
    monkeypatch.setattr(demo_pki, "_now", lambda: later)
    assert ensure_demo_meter_certificate(tmp_path) == pki
    assert (pki / "meter.pem").read_bytes() != meter_before


def _expire(cert_path: Path, ca_dir: Path) -> None:
    """Rewrite ``cert_path`` as an expired certificate for the same key, signed by the demo CA."""
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    old = x509.load_pem_x509_certificate(cert_path.read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    expired = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")]))
        .issuer_name(ca.subject)
        .public_key(old.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=10))
        .not_valid_after(now - datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    cert_path.write_bytes(expired.public_bytes(serialization.Encoding.PEM))


def test_expired_or_missing_files_are_issued_again(tmp_path: Path) -> None:
    pki = tmp_path / DIRECTORY
    first = policy_data()
    ensure_demo_meter_certificate(tmp_path)
    apply_demo_pki(first, tmp_path)
    ca_before = (pki / "ca.pem").read_bytes()
    _expire(pki / "meter.pem", pki)
    (pki / "scada-viewer-key.pem").unlink()
    assert ensure_demo_meter_certificate(tmp_path) == pki
    meter = x509.load_pem_x509_certificate((pki / "meter.pem").read_bytes())
    assert meter.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=700)
    second = policy_data()
    apply_demo_pki(second, tmp_path)
    assert (pki / "ca.pem").read_bytes() == ca_before
    assert fingerprints(second, "scada")[1] == fingerprints(first, "scada")[1]  # operator: unchanged
    assert fingerprints(second, "scada")[0] != fingerprints(first, "scada")[0]  # viewer: issued again


def test_a_new_ca_reissues_everything_it_signed(tmp_path: Path) -> None:
    pki = tmp_path / DIRECTORY
    first = policy_data()
    ensure_demo_meter_certificate(tmp_path)
    apply_demo_pki(first, tmp_path)
    (pki / "ca-key.pem").unlink()
    # As the daemon does, in two steps: the start renews the CA and the meter's
    # certificate, then reading the policy must see that the client certificates
    # come from the old CA even though it has the same name.
    ensure_demo_meter_certificate(tmp_path)
    second = policy_data()
    apply_demo_pki(second, tmp_path)
    ca = x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())
    for name in ("meter.pem", "scada-viewer.pem", "scada-operator.pem"):
        x509.load_pem_x509_certificate((pki / name).read_bytes()).verify_directly_issued_by(ca)
    assert not set(fingerprints(second, "scada")) & set(fingerprints(first, "scada"))


def tls_context(pki: Path, role: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.pem"))
    context.load_cert_chain(pki / f"scada-{role}.pem", pki / f"scada-{role}-key.pem")
    return context


async def _exchange(pki: Path, port: int, role: str) -> tuple[bool, int | None, int | None]:
    """Read measurements, write test mode and reset demand as ``role``; return what came back."""
    client = AsyncModbusTlsClient(
        "127.0.0.1", port=port, sslctx=tls_context(pki, role), timeout=3, retries=0, reconnect_delay=0
    )
    sock: Any = None
    try:
        assert await client.connect()
        sock = client.ctx.transport.get_extra_info("socket")
        read = await client.read_holding_registers(0, count=10, device_id=1)
        test_mode = await client.write_register(TEST_MODE, 1, device_id=1)
        reset = await client.write_register(DEMAND_RESET, 1, device_id=1)
    finally:
        client.close()
        # close() only starts the TLS shutdown: a socket still open when the loop ends
        # is reported as unclosed in whichever test the garbage collector runs next.
        deadline = asyncio.get_running_loop().time() + 5
        while sock is not None and sock.fileno() != -1 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    def code(response: Any) -> int | None:
        return response.exception_code if response.isError() else None

    return not read.isError(), code(test_mode), code(reset)


def test_embedded_default_serves_modbus_tls_with_the_demo_certificates(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    policy = tmp_path / "policy.toml"
    shutil.copy(ROOT / "config" / "policy.toml", policy)
    # The embedded default's [modbus.tls], on free ports and this test's state directory.
    tls_port = free_port()
    plain_port = free_port()
    while plain_port == tls_port:  # each call frees its port, so two calls may agree
        plain_port = free_port()
    pki = tmp_path / "state" / DIRECTORY
    extra = "\n".join(
        [
            "[modbus]",
            'listen = "127.0.0.1"',
            f"port = {plain_port}",
            "[modbus.tls]",
            "enabled = true",
            f"port = {tls_port}",
            f'cert = "{pki / "meter.pem"}"',
            f'key = "{pki / "meter-key.pem"}"',
            f'ca = "{pki / "ca.pem"}"',
        ]
    )
    daemon = start_daemon(write_config(tmp_path, policy, extra=extra + "\n"))
    daemon.wait_for("READY=1")
    # The viewer certificate reads; the operator may reset demand but, like the viewer, not
    # enter test mode (operator does not hold test_mode_toggle): exception 01.
    assert asyncio.run(_exchange(pki, tls_port, "viewer")) == (True, 1, 1)
    assert asyncio.run(_exchange(pki, tls_port, "operator")) == (True, 1, None)
    assert daemon.stop()[0] == 0
    log = daemon.state_dir / "security-log"
    resets = list(read_records(log, Query(events=frozenset({EventType.DEMAND_RESET}))))
    assert [(r.principal, r.outcome.value) for r in resets] == [("scada", "allow")]
    denied = list(read_records(log, Query(events=frozenset({EventType.PERMISSION_DENIED}))))
    assert sorted((r.principal, r.permission) for r in denied) == [
        ("scada", "peak_demand_reset"),
        ("scada", "test_mode_toggle"),
        ("scada", "test_mode_toggle"),
    ]
