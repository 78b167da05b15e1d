"""A power cut under SSH and front-panel load: every acknowledged action is in the log, which verifies."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

from .meter import Meter

pytestmark = pytest.mark.rig

LOG = "/var/lib/meterd/security-log"
# The panel load runs in the guest and reports each acknowledged login on the guest's
# console (ttyS0, the host's console log), which survives the power cut.
PANEL_LOAD = """
import json, socket, sys
pin = sys.argv[1]
for n in range(100000):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect("/run/meterd/panel.sock")
        s.sendall(json.dumps({"op": "login", "user": "operator", "pin": pin}).encode() + b"\\n")
        answer = json.loads(s.makefile().readline())
    if answer.get("ok"):
        with open("/dev/ttyS0", "w") as console:
            console.write(f"PANEL-ACK {n}\\n")
"""


def panel_acks(console: Path, start: int) -> int:
    """Panel logins the load saw acknowledged, as it wrote them to the guest's console after ``start``."""
    return len(re.findall(rb"PANEL-ACK \d+\r?\n", console.read_bytes()[start:]))


def logins(meter: Meter, after: int) -> dict[str, int]:
    shown = json.loads(meter.sh(f"meterctl log show --dir {LOG} --event login_success --json", timeout=180))
    counts = {"ssh": 0, "panel": 0}
    for record in shown:
        if record["seq"] > after and record["principal"] == "operator" and record["channel"] in counts:
            counts[record["channel"]] += 1
    return counts


def test_a_power_cut_under_load_loses_no_acknowledged_action(meter: Meter) -> None:
    meter.wait_active()
    head = json.loads(meter.sh(f"meterctl log show --dir {LOG} --json", timeout=180))[-1]["seq"]
    pin = meter.credentials("operator")[1]
    start = (meter.run_dir / "console.log").stat().st_size
    meter.exec("/bin/sh", "-c", "cat > /root/panel_load.py", stdin=PANEL_LOAD.encode())
    meter.sh(f"systemd-run --unit panel-load python3 /root/panel_load.py {pin}")
    acknowledged = 0
    stop = threading.Event()

    def ssh_load() -> None:
        nonlocal acknowledged
        while not stop.is_set():
            if meter.ssh("operator", "show time", timeout=60).returncode == 0:
                acknowledged += 1

    load = threading.Thread(target=ssh_load)
    load.start()
    try:
        # The cut comes once both loads have had actions acknowledged, while they still run.
        deadline = time.monotonic() + 120
        while acknowledged < 3 or panel_acks(meter.run_dir / "console.log", start) < 3:
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
        load.join(timeout=120)
    panel = panel_acks(meter.run_dir / "console-before-cut.log", start)
    found = logins(meter, head)
    assert found["ssh"] >= acknowledged, (found, acknowledged)
    assert found["panel"] >= panel, (found, panel)
    meter.sh(
        f"meterctl log verify --dir {LOG} --key-file /var/lib/meterd/security-log-initial-key", timeout=180
    )
