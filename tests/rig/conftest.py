"""The booted meter: scripts/rig.sh builds (bounded) and boots the cached guest once for this package's tests, and kills it after.

The suite runs these tests like any other (``make test``): the first run on a machine
builds the images (minutes), later runs only boot. ``ARCH=arm64`` runs them on the
aarch64 guest (``make rig-test ARCH=arm64``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .meter import Meter

ROOT = Path(__file__).resolve().parents[2]
RIG = ROOT / "scripts" / "rig.sh"
ARM64 = os.environ.get("ARCH", "x86_64") in ("arm64", "aarch64")
# Cold on 2 cores: the base image (mmdebstrap) plus the meterd layer, about 5 minutes
# under TCG (x86_64); emulated arm64 takes several times that. Warm: only the boot.
BUILD_TIMEOUT = 14400 if ARM64 else 1200
BOOT_TIMEOUT = 3600 if ARM64 else 900


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rig(action: str, env: dict[str, str], timeout: float) -> None:
    """``scripts/rig.sh ACTION``, bounded: on failure the test fails with rig.sh's one line (step and log)."""
    # A session of its own, so that a timeout ends mmdebstrap and QEMU too.
    proc = subprocess.Popen(
        ["bash", str(RIG), action],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(
            f"rig {action}: not done within {timeout:.0f} s; see {env['RIG_DIR']}/logs/", pytrace=False
        )
    if proc.returncode != 0:
        lines = [line for line in err.splitlines() if line.startswith("rig: ")] or err.splitlines()[-1:]
        pytest.fail(lines[-1] if lines else f"rig {action}: exit {proc.returncode}", pytrace=False)


@pytest.fixture(scope="package")
def meter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Meter]:
    rig_dir = os.environ.get("RIG_DIR", str(ROOT / "build" / ("rig-arm64" if ARM64 else "rig")))
    if os.environ.get("RIG_ATTACH"):
        # The guest `make rig` left booted (its run directory and ports): no boot, no kill.
        env = dict(os.environ, PYTHON=sys.executable)
        yield Meter(
            run_dir=Path(env.get("RIG_RUN_DIR", Path(rig_dir) / "run")),
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
        RIG_DIR=rig_dir,
        RIG_RUN_DIR=str(run_dir),
        RIG_SSH_PORT=str(free_port()),
        RIG_MODBUS_PORT=str(free_port()),
        RIG_MODBUS_TLS_PORT=str(free_port()),
        PYTHON=sys.executable,
    )
    rig("build", env, BUILD_TIMEOUT)
    try:
        rig("boot", env, BOOT_TIMEOUT)
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
