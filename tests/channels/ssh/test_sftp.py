"""SFTP with the real ``sftp`` client: read-only vs read-write, folder permissions, escapes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.model import frozen_map
from meterd.seclog import EventType, Record
from meterd.seclog.segments import list_segments
from tests.certs import make_certificate, pem_of
from tests.channels.ssh.harness import Server, area, policy_data
from tests.meterctl import meterctl

MUTATIONS = [
    ("put {local} /data/new.csv", "open_write"),
    ("rm /data/existing.csv", "remove"),
    ("rename /data/existing.csv /data/moved.csv", "rename"),
    ("mkdir /data/newdir", "mkdir"),
    ("rmdir /data/emptydir", "rmdir"),
    ("chmod 600 /data/existing.csv", "setstat"),
    ("symlink /data/existing.csv /data/link.csv", "symlink"),
    ("ln /data/existing.csv /data/hard.csv", "link"),
]


@pytest.fixture(scope="module")
def files(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = area(server)
    (root / "data" / "existing.csv").write_text("a,b\n1,2\n")
    (root / "data" / "emptydir").mkdir(exist_ok=True)
    local = tmp_path_factory.mktemp("local")
    (local / "upload.csv").write_text("x,y\n3,4\n")
    return local


def denials(records: list[Record], user: str) -> list[Record]:
    return [r for r in records if r.principal == user and r.outcome.value == "deny"]


def test_read_only_user_lists_and_downloads(server: Server, files: Path) -> None:
    mark = server.mark()
    result = server.sftp("sftpro", f"ls -l /data\nget /data/existing.csv {files}/got.csv\n")
    assert result.returncode == 0, result.stderr
    assert "existing.csv" in result.stdout
    assert (files / "got.csv").read_text() == "a,b\n1,2\n"
    records = server.until(mark, lambda rs: any(r.event is EventType.LOGOUT_MANUAL for r in rs))
    records = [r for r in records if r.principal == "sftpro"]
    assert records[0].event is EventType.LOGIN_SUCCESS
    assert records[0].channel.value == "sftp"
    assert any(
        r.detail.get("op") == "open_read" and r.resource == "/files/data/existing.csv" for r in records
    )
    assert records[-1].event is EventType.LOGOUT_MANUAL


@pytest.mark.parametrize(("command", "op"), MUTATIONS)
def test_read_only_user_cannot_change_anything(server: Server, files: Path, command: str, op: str) -> None:
    mark = server.mark()
    result = server.sftp("sftpro", command.format(local=files / "upload.csv") + "\n")
    assert result.returncode != 0
    refused = denials(server.since(mark), "sftpro")
    assert refused
    assert refused[0].permission == "fs_read_write"
    assert refused[0].detail["op"] == op
    assert (area(server) / "data" / "existing.csv").read_text() == "a,b\n1,2\n"
    assert not (area(server) / "data" / "new.csv").exists()


def test_read_write_user_changes_the_data_folder(server: Server, files: Path) -> None:
    batch = (
        f"put {files}/upload.csv /data/up.csv\nrename /data/up.csv /data/up2.csv\nmkdir /data/d\n"
        "rmdir /data/d\nchmod 640 /data/up2.csv\nrm /data/up2.csv\n"
    )
    mark = server.mark()
    result = server.sftp("sftprw", batch)
    assert result.returncode == 0, result.stderr
    ops = {r.detail.get("op") for r in server.since(mark) if r.principal == "sftprw"}
    assert {"open_write", "rename", "mkdir", "rmdir", "setstat", "remove"} <= ops
    assert not (area(server) / "data" / "up2.csv").exists()


def test_firmware_and_certs_need_their_own_permissions(server: Server, files: Path) -> None:
    mark = server.mark()
    assert server.sftp("sftprw", f"put {files}/upload.csv /firmware/fw.bin\n").returncode != 0
    assert server.sftp("sftprw", f"put {files}/upload.csv /certs/c.pem\n").returncode != 0
    assert server.sftp("engineer1", f"put {files}/upload.csv /certs/c.pem\n").returncode != 0
    assert server.sftp("installer1", f"put {files}/upload.csv /certs/c.pem\n").returncode != 0
    assert server.sftp("secadm1", f"put {files}/upload.csv /firmware/fw.bin\n").returncode != 0
    records = server.since(mark)
    refused = [r.permission for r in denials(records, "sftprw")]
    assert refused == ["firmware_management", "certificate_management"]
    assert [r.permission for r in denials(records, "engineer1")] == ["certificate_management"]
    assert [r.permission for r in denials(records, "installer1")] == ["certificate_management"]
    assert [r.permission for r in denials(records, "secadm1")][-1] == "firmware_management"
    assert not (area(server) / "firmware" / "fw.bin").exists()
    assert not (area(server) / "certs" / "c.pem").exists()
    assert server.sftp("installer1", f"put {files}/upload.csv /firmware/fw.bin\n").returncode == 0
    assert (area(server) / "firmware" / "fw.bin").exists()
    # fs_read_only and fs_read_write still read there.
    result = server.sftp("sftpro", f"ls /certs\nget /firmware/fw.bin {files}/fw.bin\n")
    assert result.returncode == 0, result.stderr
    assert (files / "fw.bin").read_text() == "x,y\n3,4\n"


def test_the_folder_permission_alone_reads_and_changes_its_folder(server: Server, files: Path) -> None:
    """secadm (certificate_management, no file permission) uploads a certificate and installs it."""
    pem = pem_of(make_certificate("meter-7"))
    (files / "meter.pem").write_bytes(pem)
    mark = server.mark()
    batch = f"put {files}/meter.pem /certs/meter.pem\nls -l /certs\nget /certs/meter.pem {files}/back.pem\n"
    result = server.sftp("secadm1", batch)
    assert result.returncode == 0, result.stderr
    assert (area(server) / "certs" / "meter.pem").read_bytes() == pem
    assert (files / "back.pem").read_bytes() == pem
    result = server.sftp("installer1", f"put {files}/upload.csv /firmware/fw-7.bin\nrm /firmware/fw-7.bin\n")
    assert result.returncode == 0, result.stderr
    changes = {
        (r.principal, r.permission)
        for r in server.since(mark)
        if r.detail.get("op") in {"open_write", "remove"} and r.outcome.value == "allow"
    }
    assert changes == {("secadm1", "certificate_management"), ("installer1", "firmware_management")}
    installed = server.ssh("secadm1", "cert install meter.pem")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "fingerprint: " in installed.stdout
    # Nothing beyond its folder: not /data, not /firmware.
    mark = server.mark()
    assert server.sftp("secadm1", "ls /data\n").returncode != 0
    assert server.sftp("secadm1", "ls /firmware\n").returncode != 0
    refused = {(r.permission, r.resource) for r in denials(server.since(mark), "secadm1")}
    assert refused == {("fs_read_only", "/files/data"), ("fs_read_only", "/files/firmware")}


def test_security_log_view_is_read_only_and_needs_the_permission(server: Server, files: Path) -> None:
    mark = server.mark()
    result = server.sftp("auditor", f"ls /security-log\nget /security-log/records.jsonl {files}/log.jsonl\n")
    assert result.returncode == 0, result.stderr
    lines = (files / "log.jsonl").read_text().splitlines()
    assert lines
    assert json.loads(lines[0])["seq"] >= 1
    records = [r for r in server.since(mark) if r.principal == "auditor"]
    assert any(r.event is EventType.AUDIT_LOG_ACCESS and r.outcome.value == "allow" for r in records)
    mark = server.mark()
    assert server.sftp("auditor", f"put {files}/upload.csv /security-log/x\n").returncode != 0
    assert server.sftp("sftprw", "ls /security-log\n").returncode != 0
    assert denials(server.since(mark), "auditor")[0].detail["refused"] == "read_only"
    assert denials(server.since(mark), "sftprw")[0].permission == "security_logs_access"


def test_the_frames_view_is_a_copy_of_the_log_that_meterctl_verifies(
    server: Server, files: Path, tmp_path: Path
) -> None:
    mark = server.mark()
    copy = tmp_path / "frames.log"
    result = server.sftp("auditor", f"ls /security-log\nget /security-log/frames.log {copy}\n")
    assert result.returncode == 0, result.stderr
    assert "frames.log" in result.stdout
    stored = b"".join(path.read_bytes() for _, path in list_segments(server.log_dir))
    assert copy.read_bytes()
    assert stored.startswith(copy.read_bytes())
    key = tmp_path / "initial-key"
    key.write_text(server.initial_key.hex())
    verified = meterctl("log", "verify", "--dir", str(copy), "--key-file", str(key))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    reads = [
        r for r in server.since(mark) if r.principal == "auditor" and r.event is EventType.AUDIT_LOG_ACCESS
    ]
    assert [r.detail.get("view") for r in reads if r.detail.get("view")] == ["frames"]
    assert all(r.outcome.value == "allow" for r in reads)
    assert server.sftp("sftprw", "get /security-log/frames.log\n").returncode != 0


@pytest.fixture(scope="module")
def planted(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Links and special files planted in the area by something other than SFTP."""
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("outside the area\n")
    data = area(server) / "data"
    os.symlink(outside / "secret.txt", data / "file_link")
    os.symlink(outside, data / "dir_link")
    os.symlink("../../../..", data / "up_link")
    os.link(outside / "secret.txt", data / "hard_link")
    os.mkfifo(data / "fifo")
    return outside


ESCAPES = [
    "get /../etc/passwd {local}/x",
    "get ../../etc/passwd {local}/x",
    "get /data/../../etc/passwd {local}/x",
    "ls /..",
    "ls /etc",
    "get /etc/passwd {local}/x",
    "put {local}/upload.csv /../escaped.csv",
    "put {local}/upload.csv /data/../../escaped.csv",
    "mkdir /../escaped",
    "rename /data/existing.csv /../escaped.csv",
    "get /data/file_link {local}/x",
    "get /data/dir_link/secret.txt {local}/x",
    "ls /data/dir_link/",
    "put {local}/upload.csv /data/dir_link/planted.csv",
    "put {local}/upload.csv /data/file_link",
    "symlink /etc/passwd /data/mylink",
    "symlink ../../etc /data/uplink2",
    "ln /data/existing.csv /data/hard2.csv",
    "get /data/hard_link {local}/x",
    "get /data/dir_link/../../../etc/passwd {local}/x",
    "chmod 777 /data/file_link",
    "rm /data/dir_link/secret.txt",
    "rename /data/existing.csv /data/dir_link/moved.csv",
    "ls /data/up_link/",
    "get /data/up_link/etc/passwd {local}/x",
    "cd /data/dir_link",
]


@pytest.mark.parametrize("command", ESCAPES)
def test_paths_cannot_escape_the_area(server: Server, files: Path, planted: Path, command: str) -> None:
    mark = server.mark()
    result = server.sftp("sftprw", command.format(local=files) + "\n")
    assert result.returncode != 0, result.stdout
    refused = denials(server.since(mark), "sftprw")
    assert refused, "an escape attempt must leave a record"
    assert refused[0].event is EventType.PERMISSION_DENIED
    assert refused[0].detail.get("refused") in {
        "outside_area",
        "symlink",
        "not_regular",
        "links_not_supported",
    }
    # Nothing outside changed, nothing leaked.
    assert (planted / "secret.txt").read_text() == "outside the area\n"
    assert sorted(p.name for p in planted.iterdir()) == ["secret.txt"]
    assert not (area(server).parent / "escaped.csv").exists()
    assert not (files / "x").exists() or "outside" not in (files / "x").read_text()


def test_revocation_stops_an_open_sftp_session_and_blocks_are_counted(server: Server, files: Path) -> None:
    proc = subprocess.Popen(
        server.sftp_args("sftprw"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        proc.stdin.write(f"put {files}/upload.csv /data/before.csv\nls /data\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 15
        while not (area(server) / "data" / "before.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        mark = server.mark()
        server.call(server.guard.sweep())  # the upload's block allows are recorded as a count
        counted = [r for r in server.since(mark) if r.principal == "sftprw" and "aggregated" in r.detail]
        assert counted
        assert counted[0].permission == "fs_read_write"
        server.call(_revoke(server, "sftprw"))
        mark = server.mark()
        proc.stdin.write(f"put {files}/upload.csv /data/after.csv\nbye\n")
        proc.stdin.flush()
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdin.close()
        proc.stdout.close()
    assert not (area(server) / "data" / "after.csv").exists()
    refused = denials(server.until(mark, lambda rs: bool(denials(rs, "sftprw"))), "sftprw")
    assert refused[0].permission == "fs_read_write"
    server.call(_restore(server))


async def _revoke(server: Server, user: str) -> None:
    policy = server.guard.compiled.policy
    users = dict(policy.users)
    users[user] = dataclasses.replace(users[user], roles=("files_ro",))
    server.guard.install_policy(compile_policy(dataclasses.replace(policy, users=frozen_map(users))))


async def _restore(server: Server) -> None:
    server.guard.install_policy(compile_policy(load_policy(policy_data(server.key_lines, server.hashed))))


# A trailing slash names a folder (POSIX: ENOTDIR).  SFTP version 3 has no such status: it goes
# out as "no such file" with the reason "not a directory", as OpenSSH's sftp-server answers.
SLASHED_FILE = [
    ("get /data/existing.csv/ {local}/slashed.csv", 'File "/data/existing.csv/" not found'),
    ("get /data/existing.csv/. {local}/slashed.csv", 'File "/data/existing.csv/." not found'),
    ("ls -l /data/existing.csv/", '"/data/existing.csv/" not found'),
    ("put {local}/upload.csv /data/existing.csv/", "No such file or directory"),
    ("rm /data/existing.csv/", "No such file or directory"),
    ("chmod 600 /data/existing.csv/", "No such file or directory"),
    ("rename /data/existing.csv/ /data/renamed.csv", "No such file or directory"),
    ("rename /data/existing.csv /data/renamed.csv/", "No such file or directory"),
    ("rmdir /data/existing.csv/", "No such file or directory"),
]


@pytest.mark.parametrize(("command", "message"), SLASHED_FILE)
def test_a_file_name_with_a_trailing_slash_is_not_a_directory(
    server: Server, files: Path, command: str, message: str
) -> None:
    existing = area(server) / "data" / "existing.csv"
    before = os.stat(existing)
    result = server.sftp("sftprw", command.format(local=files) + "\n")
    assert result.returncode != 0, result.stdout
    assert message in result.stderr
    assert not (files / "slashed.csv").exists()
    assert not (area(server) / "data" / "renamed.csv").exists()
    after = os.stat(existing)
    assert existing.read_text() == "a,b\n1,2\n"
    assert (after.st_mode, after.st_mtime_ns, after.st_ctime_ns) == (
        before.st_mode,
        before.st_mtime_ns,
        before.st_ctime_ns,
    )


def test_a_folder_name_with_a_trailing_slash_is_a_folder(server: Server, files: Path) -> None:
    batch = (
        "ls -l /data/emptydir/\ncd /data/emptydir/\nmkdir /data/slashdir/\n"
        f"put {files}/upload.csv /data/slashdir/\nrename /data/slashdir/ /data/slashdir2/\n"
        "rm /data/slashdir2/upload.csv\nrmdir /data/slashdir2/\n"
    )
    result = server.sftp("sftprw", batch)
    assert result.returncode == 0, result.stderr
    assert not (area(server) / "data" / "slashdir2").exists()
