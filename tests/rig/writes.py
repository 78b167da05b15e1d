"""Where meterd writes in the guest: its sandbox's writable mounts, and a file-system diff around a window that exercises it.

The diff: a stamp file, then every channel used (restart, logins, a setting change,
an SFTP upload, Modbus, the panel, a reload, a stop and start), then every file and
directory on every disk-like file system (``find -xdev``, one per mount) whose content
or inode changed after the stamp. A change is explained when it lies in meterd's three
directories or in what systemd's own components write while they run and restart
meterd; everything else is unexplained. Timers are stopped and the job queue is empty
before the stamp, so nothing else of the guest's is writing during the window.
"""

from __future__ import annotations

import json
import textwrap

from .meter import SLOW, Meter

#: meterd's directories (the unit's StateDirectory=, LogsDirectory=, RuntimeDirectory=).
MINE = ("/var/lib/meterd", "/var/log/meterd", "/run/meterd")
#: What PID 1, journald, udev and networkd write while meterd restarts and logs.
SYSTEMD = ("/run/systemd/", "/run/log/journal/", "/var/log/journal/", "/var/lib/systemd/", "/run/udev/")
#: Directories whose own entries change when systemd makes or removes meterd's runtime
#: and private temporary directories (the entries themselves are checked below them).
PARENTS = ("/", "/run", "/tmp", "/var/tmp")
STAMP = "/run/rig-writes.stamp"
#: File systems that are not storage (kernel interfaces); every other mount is scanned.
API_FS = {
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "mqueue", "debugfs", "tracefs",
    "configfs", "securityfs", "pstore", "bpf", "hugetlbfs", "fusectl", "binfmt_misc", "autofs", "efivarfs",
}  # fmt: skip


def explained(path: str) -> bool:
    """Whether a change at ``path`` is meterd's own or systemd's."""
    if path in PARENTS or path.startswith(SYSTEMD):
        return True
    if any(path == d or path.startswith(d + "/") for d in MINE):
        return True
    # PrivateTmp=: systemd makes /tmp/systemd-private-<boot>-meterd.service-<x>/tmp for each
    # start; those two directories are systemd's, anything inside the inner tmp is meterd's.
    for tmp in ("/tmp/", "/var/tmp/"):
        rest = path.removeprefix(tmp).split("/")
        if path.startswith(tmp) and rest[0].startswith("systemd-private-") and len(rest) <= 2:
            return True
    return False


def quiesce(meter: Meter) -> None:
    """Stop the guest's timers and wait for its job queue to drain, so only the window's actions write."""
    meter.sh("systemctl stop '*.timer'", timeout=120)
    meter.sh(
        'for i in $(seq 1 120); do [ -z "$(systemctl list-jobs --no-legend)" ] && exit 0; sleep 1; done; exit 1'
    )


def start_window(meter: Meter) -> None:
    """Mark the start of the window (a stamp on tmpfs, after a tick so no earlier write shares its time)."""
    meter.sh(f"sleep 0.1; touch {STAMP}; sleep 0.1")


def changed(meter: Meter) -> list[str]:
    """Every path on a storage file system changed (content or inode) since the stamp."""
    mounts = json.loads(meter.sh("findmnt --real --json -o TARGET,FSTYPE") or '{"filesystems": []}')
    targets: list[str] = []

    def walk(nodes: list[dict[str, object]]) -> None:
        for node in nodes:
            if node["fstype"] not in API_FS:
                targets.append(str(node["target"]))
            walk(node.get("children", []))  # type: ignore[arg-type]

    walk(mounts["filesystems"])
    found = meter.sh(
        f"find {' '.join(targets)} -xdev \\( -newer {STAMP} -o -cnewer {STAMP} \\) -print",
        timeout=300,
    )
    return sorted(set(found.splitlines()))


def exercise(meter: Meter, host_key_dir: str = "/var/lib/meterd/ssh") -> None:
    """Use every channel of the running meterd once, restart it, reload it, stop and start it."""
    # The tests start meterd far more often than StartLimitBurst= allows a crash loop to.
    meter.sh("systemctl reset-failed meterd; systemctl restart meterd", timeout=120)
    meter.wait_active()
    meter.trust_host_key(host_key_dir)
    assert meter.ssh("operator", "show readings").returncode == 0
    assert meter.ssh("engineer", "settings set ct_primary_a=150").returncode == 0
    upload = meter.keys_dir / "upload.csv"
    upload.write_text("t,kwh\n0,1\n")
    put = meter.sftp("engineer", f"put {upload} /data/rig-upload.csv\nrm /data/rig-upload.csv\n")
    assert put.returncode == 0, put.stderr
    meter.sh(
        "python3 -c "
        + shell_quote(
            textwrap.dedent(f"""
            import json, socket
            s = socket.socket(socket.AF_UNIX); s.settimeout({30 * SLOW}); s.connect("/run/meterd/panel.sock")
            f = s.makefile()
            s.sendall(json.dumps({{"op": "login", "user": "engineer", "pin": "{meter.credentials("engineer")[1]}"}}).encode() + b"\\n")
            session = json.loads(f.readline())["session"]
            s.sendall(json.dumps({{"op": "action", "session": session, "action": "config", "settings": {{"ct_primary_a": 160}}}}).encode() + b"\\n")
            assert json.loads(f.readline())["ok"]
            """)
        )
    )
    meter.sh("python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 502), timeout=30).close()'")
    meter.sh("systemctl reload meterd")
    meter.sh("systemctl stop meterd; systemctl reset-failed meterd; systemctl start meterd", timeout=180)
    meter.wait_active()


def shell_quote(text: str) -> str:
    """``text`` as one single-quoted shell word."""
    return "'" + text.replace("'", "'\\''") + "'"


def writable_mounts(meter: Meter) -> list[tuple[str, str]]:
    """(mount point, file system type) of every read-write mount in meterd's own mount namespace."""
    pid = meter.unit("MainPID")["MainPID"]
    out: list[tuple[str, str]] = []
    for line in meter.sh(f"cat /proc/{pid}/mountinfo").splitlines():
        fields = line.split()
        sep = fields.index("-")
        options = fields[5].split(",")
        if "rw" in options:
            out.append((fields[4], fields[sep + 1]))
    return out
