"""meterd under systemd as PID 1 in the rig guest: readiness, reload, the watchdog."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from .meter import Meter

pytestmark = pytest.mark.rig

LOG = "/var/lib/meterd/security-log"
# The policy in force, as the metrics endpoint (on the guest's loopback) reports it.
METRICS = (
    "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9102/metrics', timeout=10)"
    '.read().decode())"'
)


def metric(meter: Meter, name: str) -> float:
    for line in meter.sh(METRICS).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not served")


def listening(meter: Meter) -> set[int]:
    out = meter.sh("ss -Hltn")
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines()}


def test_active_only_once_every_channel_listens(meter: Meter) -> None:
    unit = meter.unit("Type", "NotifyAccess", "User", "WatchdogUSec")
    assert unit == {"Type": "notify", "NotifyAccess": "main", "User": "meterd", "WatchdogUSec": "30s"}
    meter.sh("systemctl restart --no-block meterd")
    states = []
    deadline = time.monotonic() + 120
    while (state := meter.unit("ActiveState")["ActiveState"]) != "active":
        states.append(state)
        assert time.monotonic() < deadline, states
        time.sleep(0.2)
    # Type=notify: active means READY=1 came, and meterd sends it only once it listens.
    assert {22, 502, 802} <= listening(meter)
    assert "activating" in states, states


def test_reload_puts_a_good_policy_in_force_and_keeps_it_on_a_broken_one(meter: Meter) -> None:
    meter.wait_active()
    version = metric(meter, "meterd_policy_version")
    original = meter.sh("cat /etc/meterd/policy.toml")
    try:
        meter.sh("sed -i 's/^version = 1$/version = 2/' /etc/meterd/policy.toml")
        meter.sh("systemctl reload meterd")
        deadline = time.monotonic() + 60
        while metric(meter, "meterd_policy_version") == version:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert metric(meter, "meterd_policy_file_version") == 2
        assert metric(meter, "meterd_policy_last_load_success") == 1
        good = metric(meter, "meterd_policy_version")

        since = meter.sh("date +%s").strip()
        meter.sh(
            "printf '[roles.broken]\\npermissions = [\"no_such_permission\"]\\n' >> /etc/meterd/policy.toml"
        )
        meter.sh("systemctl reload meterd")
        deadline = time.monotonic() + 60
        while metric(meter, "meterd_policy_last_load_success") != 0:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert metric(meter, "meterd_policy_version") == good
        assert metric(meter, "meterd_policy_file_version") == 2
        assert meter.unit("ActiveState")["ActiveState"] == "active"
        journal = meter.sh(f"journalctl -u meterd --no-pager --since @{since}")
        assert "no_such_permission" in journal, journal
    finally:
        meter.exec("/bin/sh", "-c", "cat > /etc/meterd/policy.toml", stdin=original.encode())
        meter.sh("systemctl reload meterd")


def starts_and_stops(meter: Meter) -> list[dict[str, Any]]:
    """The security log's records of meterd starting and stopping (event reboot), read in the guest."""
    records: list[dict[str, Any]] = json.loads(
        meter.sh(f"meterctl log show --dir {LOG} --event reboot --json", timeout=120)
    )
    return records


def starts(meter: Meter) -> list[dict[str, Any]]:
    """The records of meterd starting."""
    return [r for r in starts_and_stops(meter) if r["detail"].get("state") == "started"]


def test_the_watchdog_restarts_a_stopped_daemon_and_the_log_records_it(meter: Meter) -> None:
    meter.wait_active()
    before = meter.unit("NRestarts", "MainPID")
    started = starts(meter)
    meter.sh(f"kill -STOP {before['MainPID']}")
    # WatchdogSec=30, then SIGABRT and RestartSec=5: two and a half minutes bound it.
    deadline = time.monotonic() + 150
    while (now := meter.unit("NRestarts", "MainPID", "ActiveState"))["NRestarts"] == before["NRestarts"]:
        assert time.monotonic() < deadline, now
        time.sleep(2)
    assert int(now["NRestarts"]) == int(before["NRestarts"]) + 1
    meter.wait_active()
    assert meter.unit("MainPID")["MainPID"] != before["MainPID"]
    journal = meter.sh("journalctl -u meterd --no-pager -n 200")
    assert "Watchdog timeout" in journal, journal
    # The restart is in the security log, and the log still verifies after the abort.
    after = starts(meter)
    assert len(after) == len(started) + 1
    assert after[-1]["seq"] > started[-1]["seq"]
    meter.sh(
        f"meterctl log verify --dir {LOG} --key-file /var/lib/meterd/security-log-initial-key", timeout=120
    )


def test_a_stop_under_ssh_load_leaves_a_log_that_verifies(meter: Meter) -> None:
    meter.wait_active()
    done = threading.Event()
    answered = []

    def ssh_load() -> None:
        while not done.is_set():
            answered.append(meter.ssh("operator", "show time", timeout=60).returncode)

    load = threading.Thread(target=ssh_load)
    load.start()
    try:
        deadline = time.monotonic() + 120
        while answered.count(0) < 3:
            assert time.monotonic() < deadline, answered
            time.sleep(0.5)
        meter.sh("systemctl stop meterd", timeout=120)
        assert meter.unit("ActiveState", "Result") == {"ActiveState": "inactive", "Result": "success"}
    finally:
        done.set()
        load.join(timeout=120)
        meter.sh("systemctl start meterd", timeout=120)
    stops = [r for r in starts_and_stops(meter) if r["detail"].get("state") == "stopped"]
    assert stops
    meter.sh(
        f"meterctl log verify --dir {LOG} --key-file /var/lib/meterd/security-log-initial-key", timeout=120
    )
