"""meterd writes only below its state directory: the configuration directory may be read-only.

The embedded default is copied into a scratch checkout (``config/`` beside
``var/``, as in the repository) and started from there with ``config/``
read-only.  The tests run as root, for whom ``chmod`` stops no write, so the
directory is also mounted read-only in a private mount namespace (``unshare
-m``) for the daemon, where the kernel permits it; in every case a snapshot of
everything outside ``var/`` (names, types, sizes, modes, mtimes) must be the
same after the daemon ran as before.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from tests.channels.ssh.harness import PASSWORD_LOGIN
from tests.daemon.conftest import RunningDaemon, embedded_default

Snapshot = dict[str, tuple[str, int, int, int]]


class StartDaemon(Protocol):
    def __call__(
        self, config: Path, *, state_dir: Path | None = None, prefix: Sequence[str] = (), cwd: Path = ...
    ) -> RunningDaemon: ...


def snapshot(root: Path, *, skip: Path) -> Snapshot:
    """Every entry below ``root`` except ``skip`` (and ``root`` itself, whose mtime ``skip``'s creation
    changes): type, size, mode and mtime; a directory's mtime changes with any entry made in it."""
    found: Snapshot = {}
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(directory, d) != skip]
        for name in [*([] if Path(directory) == root else ["."]), *dirs, *files]:
            path = Path(directory, name)
            st = path.lstat()
            kind = "dir" if path.is_dir() and not path.is_symlink() else "file"
            found[str(path.relative_to(root))] = (kind, st.st_size, st.st_mode, st.st_mtime_ns)
    return found


def read_only_prefix(directory: Path) -> list[str]:
    """A command prefix that runs a command with ``directory`` mounted read-only, or [] if not permitted."""
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "--bind", "-o", "ro", directory, directory],
        capture_output=True,
        check=False,
        timeout=30,
    )
    if probe.returncode != 0:
        return []
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(directory)]


def mount_options(pid: int, directory: Path) -> list[str]:
    """The mount options of ``directory`` as process ``pid`` sees it ([] if it is no mount point there)."""
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(directory):
            return fields[5].split(",")
    return []


def ssh_login(port: int, known_hosts: Path, user: str, password: str) -> subprocess.CompletedProcess[str]:
    """Log in with the real OpenSSH client, accepting only the host key in ``known_hosts``."""
    return subprocess.run(
        [
            "sshpass",
            "-p",
            password,
            "ssh",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            *PASSWORD_LOGIN,
            "-p",
            str(port),
            f"{user}@127.0.0.1",
            "whoami",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_starts_with_a_read_only_configuration_directory(tmp_path: Path, start_daemon: StartDaemon) -> None:
    checkout = tmp_path / "checkout"
    config, ports = embedded_default(checkout)
    state = checkout / "var"
    config_dir = checkout / "config"
    for directory in (config_dir / "daemon", config_dir):
        directory.chmod(0o555)
    before = snapshot(checkout, skip=state)
    prefix = read_only_prefix(config_dir)

    daemon = start_daemon(config, state_dir=state, prefix=prefix, cwd=checkout)
    daemon.wait_for("READY=1")
    if prefix:
        assert "ro" in mount_options(daemon.process.pid, config_dir)

    host_key = state / "ssh" / "ssh_host_ed25519_key"
    assert host_key.stat().st_mode & 0o777 == 0o600
    public = (state / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{ports[2222]} {public[0]} {public[1]}\n")
    operator = next(
        line.split()
        for line in (state / "demo-credentials.txt").read_text().splitlines()
        if line.startswith("operator ")
    )
    login = ssh_login(ports[2222], known_hosts, "operator", operator[1])
    assert login.returncode == 0, login.stdout + login.stderr
    assert login.stdout.splitlines()[0] == "user: operator"

    assert daemon.stop()[0] == 0
    assert snapshot(checkout, skip=state) == before
    assert not (config_dir / "daemon" / "ssh").exists()
