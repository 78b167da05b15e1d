"""Running the real ``meterctl`` in a child process, as an operator would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def meterctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``meterctl ARGS`` from the checkout's root; never raises for its exit status."""
    return subprocess.run(
        [sys.executable, "-m", "meterd.cli.meterctl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def admin_remote(key: Path, port: int) -> list[str]:
    """The options that reach a test meter on 127.0.0.1 as ``rbacmnt`` with ``key`` (host key not pinned)."""
    return [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--user",
        "rbacmnt",
        "--identity",
        str(key),
        "--ssh-option",
        "StrictHostKeyChecking=no",
        "--ssh-option",
        "UserKnownHostsFile=/dev/null",
    ]
