"""The shipped unit passes ``systemd-analyze verify`` and rates at most 2.0 ("OK") in its security review.

The file checked is ``systemd/meterd.service`` itself; only the ExecStart
program is pointed at an executable that exists here (verify refuses a
missing one), every other line is the shipped text.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "meterd.service"
SHIPPED_EXEC = "/usr/bin/meterd"
EXEC_START = f"ExecStart={SHIPPED_EXEC} --config /etc/meterd/meterd.toml"
MAX_EXPOSURE = 2.0


def _analyze() -> str:
    # It lives in /usr/bin, but an unprivileged PATH may still lack it.
    path = shutil.which("systemd-analyze") or shutil.which("systemd-analyze", path="/usr/bin:/bin")
    if path is None:
        pytest.fail("systemd-analyze is not installed (Debian package systemd)")
    return path


def _settings(text: str) -> dict[str, list[str]]:
    """Return ``Section.Key -> values`` (systemd allows a key more than once)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The shipped unit in a scratch directory, ExecStart's program replaced by one that exists."""
    text = UNIT.read_text()
    assert text.count(EXEC_START) == 1, "the shipped ExecStart line changed"
    program = Path(sys.executable).parent / "meterd"
    if not program.exists():
        program = tmp_path / "meterd"
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(0o755)
    rendered = tmp_path / "meterd.service"
    rendered.write_text(text.replace(f"ExecStart={SHIPPED_EXEC} ", f"ExecStart={program} ", 1))
    return rendered


#: Where the system's own unit files live; verify loads some of them too.
SYSTEM_UNIT_DIRS = ("/lib/systemd/", "/usr/lib/systemd/", "/etc/systemd/", "/run/systemd/")


def _verify(unit: Path) -> tuple[int, str, list[str]]:
    """Run ``systemd-analyze verify``; returns the exit code, stdout and the stderr lines about ``unit``.

    verify also loads system units that the unit's (default) dependencies reach,
    services of installed packages among them, and prints their warnings as
    ``/lib/systemd/system/x.service:23: ...``: those belong to other packages.
    """
    result = subprocess.run([_analyze(), "verify", str(unit)], capture_output=True, text=True, check=False)
    ours = [
        line
        for line in result.stderr.splitlines()
        if not (line.startswith(SYSTEM_UNIT_DIRS) and not line.startswith(f"{unit}:"))
    ]
    return result.returncode, result.stdout, ours


def test_verify_is_clean(unit: Path) -> None:
    # Unknown keys and bad values are only warnings to verify: any output about the unit is a failure.
    assert _verify(unit) == (0, "", [])


def test_verify_reports_a_warning_in_the_unit(unit: Path) -> None:
    # The warning a system unit may carry (freeradius.service does) still counts in meterd's.
    unit.write_text(unit.read_text().replace("[Service]\n", "[Service]\nMemoryLimit=1G\n", 1))
    _, _, ours = _verify(unit)
    assert len(ours) == 1, ours
    assert ours[0].startswith(f"{unit}:")
    assert "MemoryLimit=" in ours[0]


def test_security_exposure_is_ok(unit: Path) -> None:
    result = subprocess.run(
        [_analyze(), "security", "--offline=yes", str(unit)], capture_output=True, text=True, check=False
    )
    match = re.search(r"Overall exposure level for meterd\.service: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    assert match.group(2) == "OK"


def test_the_requirements_are_in_the_unit() -> None:
    s = _settings(UNIT.read_text())
    one = {key: values[-1] for key, values in s.items()}
    assert one["Service.Type"] == "notify"
    assert one["Service.NotifyAccess"] == "main"
    assert int(one["Service.WatchdogSec"]) > 0
    assert one["Service.Restart"] == "on-failure"
    assert int(one["Unit.StartLimitBurst"]) > 0
    assert int(one["Unit.StartLimitIntervalSec"]) > 0
    assert one["Service.ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["Service.User"] == "meterd"
    assert one["Service.NoNewPrivileges"] == "yes"
    assert one["Service.ProtectSystem"] == "strict"
    assert one["Service.PrivateTmp"] == "yes"
    assert one["Service.CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert one["Service.AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert one["Service.DeviceAllow"] == "/dev/ttyS1 rw"
    assert one["Service.PrivateDevices"] == "yes"
    assert set(one["Service.RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert s["Service.SystemCallFilter"][0] == "@system-service"
    for key in ("StateDirectory", "LogsDirectory", "RuntimeDirectory"):
        assert one[f"Service.{key}"] == "meterd"
    # Nothing else is writable: no ReadWritePaths beside the managed directories, and
    # the API file systems strict mode leaves writable (/run/lock, /dev/shm and
    # /dev/mqueue are world-writable) are made read-only.
    assert "Service.ReadWritePaths" not in s
    read_only = {p.lstrip("-") for v in s.get("Service.ReadOnlyPaths", []) for p in v.split()}
    assert {"/run", "/dev/shm", "/dev/mqueue", "/dev/hugepages"} <= read_only
