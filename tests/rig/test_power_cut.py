"""A power cut under SSH and front-panel load: every acknowledged action is in the log, which verifies.

Both loads change the meter's settings (``dss_config`` over SSH, ``front_panel_config`` on
the panel), each change with a value of its own, and log in for every change; QEMU is
killed while both still run. An action counts as acknowledged once its client had the
answer: the SSH command's exit status 0 on the host, the panel's ``"ok": true`` written
by the in-guest load to the guest's console (which the host keeps, so it survives the cut).
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .meter import CONSOLE, SLOW, Meter

pytestmark = pytest.mark.rig

LOG = "/var/lib/meterd/security-log"
USER = "engineer"
SSH_BASE = 1000  # SSH's n-th change sets ct_primary_a to SSH_BASE + n
PANEL_BASE = 50000  # the panel's n-th change sets it to PANEL_BASE + n
PANEL_LOAD = """
import json, socket, sys
user, pin, base, console = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
for n in range(40000):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect("/run/meterd/panel.sock")
        answers = s.makefile()
        s.sendall(json.dumps({"op": "login", "user": user, "pin": pin}).encode() + b"\\n")
        session = json.loads(answers.readline())["session"]
        change = {"op": "action", "session": session, "action": "config", "settings": {"ct_primary_a": base + n}}
        s.sendall(json.dumps(change).encode() + b"\\n")
        answer = json.loads(answers.readline())
    if answer.get("ok"):
        with open(console, "w") as out:
            out.write(f"PANEL-ACK {n}\\n")
"""


def panel_acks(console: Path, start: int) -> set[int]:
    """The panel changes the load saw acknowledged, as it wrote them to the guest's console after ``start``."""
    return {int(n) for n in re.findall(rb"PANEL-ACK (\d+)\r?\n", console.read_bytes()[start:])}


def records(meter: Meter, after: int) -> list[dict[str, Any]]:
    """The engineer's records after ``seq`` ``after``, read in the guest."""
    shown: list[dict[str, Any]] = json.loads(meter.sh(f"meterctl log show --dir {LOG} --json", timeout=300))
    return [r for r in shown if r["seq"] > after and r["principal"] == USER]


def test_a_power_cut_under_load_loses_no_acknowledged_action(meter: Meter) -> None:
    meter.wait_active()
    head = json.loads(meter.sh(f"meterctl log show --dir {LOG} --json", timeout=180))[-1]["seq"]
    pin = meter.credentials(USER)[1]
    start = (meter.run_dir / "console.log").stat().st_size
    meter.exec("/bin/sh", "-c", "cat > /root/panel_load.py", stdin=PANEL_LOAD.encode())
    meter.sh(f"systemd-run --unit panel-load python3 /root/panel_load.py {USER} {pin} {PANEL_BASE} {CONSOLE}")
    acknowledged: list[int] = []
    stop = threading.Event()

    def ssh_load() -> None:
        n = 0
        while not stop.is_set():
            done = meter.ssh(USER, f"settings set ct_primary_a={SSH_BASE + n}", timeout=60)
            if done.returncode == 0:
                acknowledged.append(n)
            n += 1

    load = threading.Thread(target=ssh_load)
    load.start()
    try:
        # The cut comes once both loads have had changes acknowledged, while they still run.
        deadline = time.monotonic() + 180 * SLOW
        while len(acknowledged) < 3 or len(panel_acks(meter.run_dir / "console.log", start)) < 3:
            assert time.monotonic() < deadline, (
                acknowledged,
                meter.sh(
                    "systemctl status panel-load --no-pager; journalctl -u panel-load --no-pager", check=False
                ),
            )
            time.sleep(0.5)
    finally:
        # No new SSH request starts, but the one in flight and the panel load are cut mid-way.
        stop.set()
        meter.powercycle()
        load.join(timeout=120 * SLOW)
    panel = panel_acks(meter.run_dir / "console-before-cut.log", start)
    found = records(meter, head)
    # The panel's changes carry their values: each acknowledged one has its own record.
    panel_changes = {
        int(r["detail"]["settings"].removeprefix("ct_primary_a=")) - PANEL_BASE
        for r in found
        if r["channel"] == "panel" and r["event"] == "config_change" and r["outcome"] == "allow"
    }
    assert panel <= panel_changes, sorted(panel - panel_changes)
    # The shell records the command, not its values: as many allowed changes as acknowledged.
    ssh_changes = [
        r
        for r in found
        if r["channel"] == "ssh" and r["outcome"] == "allow" and r["detail"].get("command") == "settings set"
    ]
    assert len(ssh_changes) >= len(acknowledged), (len(ssh_changes), acknowledged)
    logins = [r for r in found if r["event"] == "login_success"]
    assert len([r for r in logins if r["channel"] == "ssh"]) >= len(acknowledged)
    assert len([r for r in logins if r["channel"] == "panel"]) >= len(panel)
    meter.sh(
        f"meterctl log verify --dir {LOG} --key-file /var/lib/meterd/security-log-initial-key", timeout=300
    )
