"""The booted meter: scripts/rig.sh boots the cached guest once for this package's tests (and kills it after)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .meter import Meter

ROOT = Path(__file__).resolve().parents[2]
RIG = ROOT / "scripts" / "rig.sh"
# Cold: the base image (mmdebstrap) plus the meterd layer; warm: a boot.
BUILD_TIMEOUT = 3600
BOOT_TIMEOUT = 900


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="package")
def meter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Meter]:
    if os.environ.get("RIG_ATTACH"):
        # The guest `make rig` left booted (its run directory and ports): no boot, no kill.
        env = dict(os.environ, PYTHON=sys.executable)
        yield Meter(
            run_dir=Path(env.get("RIG_RUN_DIR", ROOT / "build" / "rig" / "run")),
            ssh_port=int(env.get("RIG_SSH_PORT", "10022")),
            modbus_port=int(env.get("RIG_MODBUS_PORT", "10502")),
            modbus_tls_port=int(env.get("RIG_MODBUS_TLS_PORT", "10802")),
            keys_dir=tmp_path_factory.mktemp("rig-keys"),
            env=env,
        )
        return
    run_dir = tmp_path_factory.mktemp("rig-run")
    env = dict(
        os.environ,
        RIG_RUN_DIR=str(run_dir),
        RIG_SSH_PORT=str(free_port()),
        RIG_MODBUS_PORT=str(free_port()),
        RIG_MODBUS_TLS_PORT=str(free_port()),
        PYTHON=sys.executable,
    )
    built = subprocess.run(
        ["bash", str(RIG), "build"],
        env=env,
        timeout=BUILD_TIMEOUT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    try:
        booted = subprocess.run(
            ["bash", str(RIG), "boot"],
            env=env,
            timeout=BOOT_TIMEOUT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert booted.returncode == 0, booted.stderr
        yield Meter(
            run_dir=run_dir,
            ssh_port=int(env["RIG_SSH_PORT"]),
            modbus_port=int(env["RIG_MODBUS_PORT"]),
            modbus_tls_port=int(env["RIG_MODBUS_TLS_PORT"]),
            keys_dir=tmp_path_factory.mktemp("rig-keys"),
            env=env,
        )
    finally:
        subprocess.run(["bash", str(RIG), "kill"], env=env, timeout=60, check=False)
