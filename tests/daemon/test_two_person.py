"""The README's two-person steps against meterd with the shipped policy: real ssh, sftp and sshpass.

The demo users ``installer`` (requester) and ``approver`` log in with the
random passwords of the first start, as a person following the README would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from meterd.meter.firmware import build_image
from meterd.seclog import EventType, Query, read_records
from tests.channels.ssh.harness import PASSWORD_LOGIN, SSH_BASE, have_clients
from tests.daemon.conftest import ROOT, RunningDaemon, free_port, write_config

StartDaemon = Callable[[Path], RunningDaemon]
TIMEOUT = 30


class Person:
    """One demo user at the keyboard: ssh and sftp with the password from demo-credentials.txt."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.port = port
        self.user = user
        self.password = password

    def _args(self, program: str, port_flag: str) -> list[str]:
        return [
            "sshpass",
            "-p",
            self.password,
            program,
            *SSH_BASE,
            *PASSWORD_LOGIN,
            port_flag,
            str(self.port),
            f"{self.user}@127.0.0.1",
        ]

    def start(self, command: str) -> subprocess.Popen[str]:
        """Start ``ssh user@meter COMMAND`` without waiting for it."""
        return subprocess.Popen(
            [*self._args("ssh", "-p"), command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, command: str) -> tuple[int, str]:
        """``ssh user@meter COMMAND``: its exit status and output."""
        result = subprocess.run(
            [*self._args("ssh", "-p"), command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        return result.returncode, result.stdout + result.stderr

    def start_sftp(self, commands: str) -> subprocess.Popen[str]:
        """Start ``echo COMMANDS | sftp user@meter``, as the README does it."""
        read, write = os.pipe()
        os.write(write, commands.encode())  # a few bytes: the pipe holds them
        os.close(write)
        try:
            return subprocess.Popen(
                self._args("sftp", "-P"),
                stdin=read,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        finally:
            os.close(read)


def credentials(state_dir: Path) -> dict[str, str]:
    lines = (state_dir / "demo-credentials.txt").read_text().splitlines()
    return {line.split()[0]: line.split()[1] for line in lines if line and not line.startswith("#")}


def waiting_request(approver: Person, requester: str, permission: str) -> int:
    """The id ``approvals`` shows the approver for ``requester``'s request, once it is there."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        status, output = approver.run("approvals")
        assert status == 0, output
        for row in output.splitlines()[1:]:
            fields = row.split()
            if fields[1:3] == [requester, permission]:
                return int(fields[0])
        time.sleep(0.2)
    raise AssertionError(f"no {permission} request of {requester} listed for {approver.user}")


def approved(
    asking: subprocess.Popen[str], requester: str, approver: Person, permission: str
) -> tuple[int, str]:
    """Approve ``requester``'s waiting request as ``approver``; return its number and the client's output."""
    try:
        number = waiting_request(approver, requester, permission)
        assert approver.run(f"approve {number}") == (0, f"request {number} approved\n")
        output, _ = asking.communicate(timeout=TIMEOUT)
    finally:
        if asking.poll() is None:
            asking.kill()
            asking.communicate()
    assert asking.returncode == 0, output
    return number, output


def two_person(requester: Person, approver: Person, command: str, permission: str) -> str:
    """Run ``command`` as the requester, approve it as the approver; return the requester's output."""
    number, output = approved(requester.start(command), requester.user, approver, permission)
    assert f"waiting for a second person: request {number} " in output
    return output


@pytest.mark.skipif(not have_clients(), reason="OpenSSH clients and sshpass are needed")
def test_master_reset_and_firmware_install_by_two_people(tmp_path: Path, start_daemon: StartDaemon) -> None:
    policy = tmp_path / "policy.toml"
    shutil.copy(ROOT / "config" / "policy.toml", policy)
    port = free_port()
    daemon = start_daemon(write_config(tmp_path, policy, ssh_port=port))
    daemon.wait_for("READY=1")
    passwords = credentials(daemon.state_dir)
    installer = Person(port, "installer", passwords["installer"])
    approver = Person(port, "approver", passwords["approver"])
    assert "approve ID" in approver.run("help")[1]

    output = two_person(installer, approver, "master-reset", "master_reset")
    assert "reset_at: " in output

    image = tmp_path / "fw-2.0.0.bin"
    image.write_bytes(build_image("2.0.0", b"demo firmware"))
    # Writing into /firmware uses firmware_management, so the upload waits for the approver too.
    approved(installer.start_sftp(f"put {image} /firmware/\n"), "installer", approver, "firmware_management")
    assert (daemon.state_dir / "files" / "firmware" / image.name).read_bytes() == image.read_bytes()
    output = two_person(installer, approver, f"firmware install {image.name}", "firmware_management")
    assert "version: 2.0.0" in output
    assert "firmware_version: 2.0.0" in installer.run("show status")[1]

    daemon.stop()
    log = daemon.state_dir / "security-log"
    for event in (EventType.MASTER_RESET, EventType.FIRMWARE_CHANGE):
        # Exactly one: the upload's approval is an access decision, not a firmware change.
        [done] = read_records(log, Query(events=frozenset({event}), principals=frozenset({"installer"})))
        assert done.outcome.value == "allow"
        assert done.detail["approved_by"] == "approver"
