"""meterd writes nothing outside /var/lib/meterd, /var/log/meterd and /run/meterd: its sandbox, and a file-system diff.

The last test is the diff's own check: with the sandbox relaxed for a scratch directory
under /etc/meterd and meterd configured to keep its host keys there, the same diff and
the same mount check must name what it wrote.
"""

from __future__ import annotations

import pytest

from .meter import Meter
from .writes import MINE, changed, exercise, explained, quiesce, start_window, writable_mounts

pytestmark = pytest.mark.rig

#: Writable mounts meterd's namespace may hold besides its three directories: its private
#: /tmp and /var/tmp (PrivateTmp=, empty and thrown away), the private /dev of
#: PrivateDevices= (a tmpfs with only the pseudo devices and its own ptys), the serial
#: console's device node, and /proc (kernel tunables are read-only below it).
SANDBOX_RW = {"/tmp", "/var/tmp", "/dev", "/dev/pts", "/dev/ttyS1", "/proc"}
SCRATCH = "/etc/meterd/scratch"
DROP_IN = "/run/systemd/system/meterd.service.d/scratch.conf"


def outside(mounts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(m, t) for m, t in mounts if m not in MINE and m not in SANDBOX_RW]


def test_the_sandbox_leaves_only_meterds_directories_writable(meter: Meter) -> None:
    meter.wait_active()
    mounts = writable_mounts(meter)
    assert outside(mounts) == [], mounts
    assert {m for m, _ in mounts} >= set(MINE), mounts
    # No file anywhere on the guest's disk belongs to meterd outside its directories.
    owned = meter.sh("find / -xdev -user meterd -print", timeout=300).split()
    assert [p for p in owned if not p.startswith(MINE)] == [], owned


def test_exercising_every_channel_writes_only_meterds_directories(meter: Meter) -> None:
    meter.wait_active()
    quiesce(meter)
    start_window(meter)
    exercise(meter)
    paths = changed(meter)
    assert [p for p in paths if not explained(p)] == [], paths
    # The window saw meterd at work (the diff is not empty by accident of its scan).
    assert any(p.startswith("/var/lib/meterd/security-log/") for p in paths), paths


def test_the_diff_and_the_mount_check_catch_a_write_outside(meter: Meter) -> None:
    meter.wait_active()
    original = meter.sh("cat /etc/meterd/meterd.toml")
    try:
        # A scratch run: the unit may write SCRATCH, and meterd keeps its host keys there.
        meter.sh(f"install -d -o meterd -g meterd -m 0700 {SCRATCH}")
        meter.sh(
            f"mkdir -p {DROP_IN.rsplit('/', 1)[0]}; printf '[Service]\\nReadWritePaths={SCRATCH}\\n' > {DROP_IN}"
        )
        meter.sh(f"sed -i 's|^port = 22$|port = 22\\nhost_key_dir = \"{SCRATCH}\"|' /etc/meterd/meterd.toml")
        meter.sh("systemctl daemon-reload")
        quiesce(meter)
        start_window(meter)
        exercise(meter, host_key_dir=SCRATCH)
        unexplained = [p for p in changed(meter) if not explained(p)]
        assert f"{SCRATCH}/ssh_host_ed25519_key" in unexplained, unexplained
        assert (SCRATCH, "ext4") in outside(writable_mounts(meter))
    finally:
        meter.exec("/bin/sh", "-c", "cat > /etc/meterd/meterd.toml", stdin=original.encode())
        meter.sh(
            f"rm -f {DROP_IN}; systemctl daemon-reload; systemctl reset-failed meterd; systemctl restart meterd",
            timeout=180,
        )
        meter.sh(f"rm -rf {SCRATCH}")
        meter.wait_active()
        meter.trust_host_key("/var/lib/meterd/ssh")
