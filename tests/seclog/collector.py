"""A real syslog collector for tests: rsyslogd with imtcp (optionally gtls) writing raw messages to a file."""

from __future__ import annotations

import datetime
import glob
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meterd.seclog.reader import iter_lines

RSYSLOGD = shutil.which("rsyslogd", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def require_rsyslogd(tls: bool) -> str:
    """Return rsyslogd's path, failing (not skipping) the test when the package is absent."""
    if RSYSLOGD is None:
        pytest.fail("rsyslogd is not installed: run scripts/system-deps.sh (Debian package rsyslog)")
    if tls and not glob.glob("/usr/lib/*/rsyslog/lmnsd_gtls.so") + glob.glob(
        "/usr/lib/rsyslog/lmnsd_gtls.so"
    ):
        pytest.fail("rsyslog's gtls driver is missing: run scripts/system-deps.sh (package rsyslog-gnutls)")
    return RSYSLOGD


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls_files(directory: Path) -> ssl.SSLContext:
    """Write a test CA and a collector certificate for 127.0.0.1/localhost; return a client context."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("meterd test CA"))
        .issuer_name(_name("meterd test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Collector:
    """rsyslogd on 127.0.0.1:``port`` appending every raw message to ``out``."""

    def __init__(self, directory: Path, tls: bool) -> None:
        self.binary = require_rsyslogd(tls)
        self.directory = directory
        self.port = free_port()
        self.out = directory / "collected.log"
        self.client_tls = make_tls_files(directory) if tls else None
        self.conf = directory / "rsyslog.conf"
        self.pidfile = directory / "rsyslogd.pid"
        self.process: subprocess.Popen[bytes] | None = None
        if tls:
            global_extra = (
                f' DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{directory}/ca.pem"'
                f' DefaultNetstreamDriverCertFile="{directory}/cert.pem"'
                f' DefaultNetstreamDriverKeyFile="{directory}/key.pem"'
            )
            module = (
                'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" '
                'StreamDriver.AuthMode="anon")'
            )
        else:
            global_extra, module = "", 'module(load="imtcp")'
        self.conf.write_text(
            f'global(workDirectory="{directory}"{global_extra})\n'
            f"{module}\n"
            f'input(type="imtcp" port="{self.port}" address="127.0.0.1")\n'
            'template(name="raw" type="string" string="%rawmsg%\\n")\n'
            f'*.* action(type="omfile" file="{self.out}" template="raw")\n'
        )

    def start(self) -> None:
        self.pidfile.unlink(missing_ok=True)
        log = open(self.directory / "rsyslogd.stderr", "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [self.binary, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"rsyslogd exited: {(self.directory / 'rsyslogd.stderr').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail("rsyslogd did not start listening")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def frames(self) -> list[bytes]:
        """The frames received so far, in arrival order."""
        if not self.out.exists():
            return []
        return [line.data.rstrip(b"\n") for line in iter_lines(self.out)]
