"""A power cut under SSH and front-panel load: every acknowledged action is in the log, which verifies."""

from __future__ import annotations

import json
import re
import threading
import time

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
        deadline = time.monotonic() + 120
        while acknowledged < 3:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    finally:
        # No new SSH request starts, but the one in flight and the panel load are cut mid-way.
        stop.set()
        meter.powercycle()
        load.join(timeout=120)
    console = (meter.run_dir / "console-before-cut.log").read_text(errors="replace")
    panel_acks = len(re.findall(r"^PANEL-ACK \d+", console, re.MULTILINE))
    assert panel_acks > 0
    found = logins(meter, head)
    assert found["ssh"] >= acknowledged, (found, acknowledged)
    assert found["panel"] >= panel_acks, (found, panel_acks)
    meter.sh(
        f"meterctl log verify --dir {LOG} --key-file /var/lib/meterd/security-log-initial-key", timeout=180
    )
