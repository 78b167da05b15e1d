"""The booted meter from the host: OpenSSH, SFTP, the emulated UART, mbpoll, the log's verification."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.meterctl import meterctl

from .meter import Meter

pytestmark = pytest.mark.rig


def test_ssh_logs_in_with_the_demo_keys_and_the_guard_enforces(meter: Meter) -> None:
    meter.wait_active()
    allowed = meter.ssh("operator", "show readings")
    assert allowed.returncode == 0, allowed.stderr
    assert "energy_import_kwh: " in allowed.stdout
    denied = meter.ssh("viewer", "demand reset")
    assert denied.returncode == 1, denied.stdout + denied.stderr
    assert "denied: peak_demand_reset (" in denied.stdout + denied.stderr


def test_the_security_log_fetched_over_sftp_verifies_on_the_host(meter: Meter, tmp_path: Path) -> None:
    meter.wait_active()
    copy = tmp_path / "frames.log"
    fetched = meter.sftp("secaud", f"get /security-log/frames.log {copy}\n")
    assert fetched.returncode == 0, fetched.stderr
    key = tmp_path / "initial-key"
    key.write_bytes(meter.exec("cat", "/var/lib/meterd/security-log-initial-key").stdout)
    verified = meterctl("log", "verify", "--dir", str(copy), "--key-file", str(key))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # Without the permission the view is refused.
    assert meter.sftp("operator", "ls /security-log\n").returncode != 0


def test_mbpoll_reads_over_the_forwarded_modbus_port(meter: Meter) -> None:
    meter.wait_active()
    result = subprocess.run(
        [
            "mbpoll",
            "-m",
            "tcp",
            "-p",
            str(meter.modbus_port),
            "-a",
            "1",
            "-0",
            "-1",
            "-r",
            "0",
            "-c",
            "4",
            "-o",
            "10",
            "127.0.0.1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(re.findall(r"^\[\d+\]:\s+-?\d+", result.stdout, re.MULTILINE)) == 4, result.stdout


def test_the_serial_console_answers_a_login_on_the_uart(meter: Meter) -> None:
    meter.wait_active()
    password = meter.credentials("operator")[0]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as uart:
        uart.settimeout(5)
        uart.connect(str(meter.run_dir / "ttyS1.sock"))
        seen = b""

        def expect(pattern: bytes, timeout: float = 60.0) -> None:
            nonlocal seen
            deadline = time.monotonic() + timeout
            while pattern not in seen:
                assert time.monotonic() < deadline, seen
                try:
                    chunk = uart.recv(4096)
                except TimeoutError:
                    continue
                assert chunk, seen
                seen += chunk

        uart.sendall(b"\r")
        expect(b"login: ")
        uart.sendall(b"operator\r")
        expect(b"Password: ")
        uart.sendall(password.encode() + b"\r")
        expect(b"meter> ")
        seen = b""
        uart.sendall(b"show readings\r")
        expect(b"energy_import_kwh: ")
        uart.sendall(b"exit\r")
