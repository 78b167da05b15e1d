"""Fleet rollout speed: one signed bundle to 20 loopback meters, with Ansible (forks 10) and with
sequential ``meterctl policy push``, in one run; meters per minute for each.

Run: ``python benchmarks/bench_fleet.py [--meters N] [--quick] [--json]`` (``--quick``: 3 meters).

Every meter is a real meterd process with its own port, state directory and
the same two trusted signing keys (threshold 2).  Ansible runs the
``meterd.meter.policy_push`` action plugin from ``ansible/`` with 10 forks,
no serial batches; meterctl pushes a second bundle (a higher version, other
content) to each meter in turn.  Both paths pay for one OpenSSH login per
meter; Ansible also asks each meter for its status first.  On a small machine
the meters and the clients share the cores, so the figures are a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.daemon.conftest import RunningDaemon  # noqa: E402
from tests.daemon.fleet import Fleet, start_fleet  # noqa: E402

PUSH_ALL = """
- hosts: meters
  gather_facts: false
  connection: local
  tasks:
    - meterd.meter.policy_push:
        bundle: "{{ bundle }}"
"""


def starter(directory: Path, started: list[RunningDaemon]) -> object:
    def start(config: Path) -> RunningDaemon:
        notify_path = directory / f"notify-{len(started)}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify_path))
        stderr_path = directory / f"meterd-{len(started)}.stderr"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "meterd.daemon.main", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
                env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
                cwd=ROOT,
            )
        daemon = RunningDaemon(process, sock, config.parent / "state", config, stderr_path)
        started.append(daemon)
        return daemon

    return start


def meterctl_push(fleet: Fleet, bundle: Path) -> None:
    inventory = fleet.inventory.read_text()
    key = inventory.split("ansible_ssh_private_key_file: ", 1)[1].split()[0]
    known_hosts = inventory.split("meterd_known_hosts: ", 1)[1].split()[0]
    for meter in fleet.meters:
        argv = [
            sys.executable,
            "-m",
            "meterd.cli.meterctl",
            "policy",
            "push",
            str(bundle),
            "--host",
            "127.0.0.1",
        ]
        argv += ["--port", str(meter.port), "--user", "rbacmnt", "--identity", key]
        argv += [
            "--ssh-option",
            f"UserKnownHostsFile={known_hosts}",
            "--ssh-option",
            "StrictHostKeyChecking=yes",
        ]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
        )
        if done.returncode != 0:
            raise SystemExit(f"meterctl push to {meter.name} failed: {done.stdout}{done.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 meters: the same path, too few to quote")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.meters = 3
    started: list[RunningDaemon] = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as scratch:
        directory = Path(scratch)
        try:
            fleet = start_fleet(directory, starter(directory, started), args.meters, lambda _: ["fleet"])  # type: ignore[arg-type]
            playbook = directory / "push-all.yml"
            playbook.write_text(PUSH_ALL)
            first = fleet.bundle("v1", "engineer", 1, ["fleet"])
            begun = time.monotonic()
            run = fleet.playbook(str(playbook), "-e", f"bundle={first}", "--forks", "10")
            ansible_s = time.monotonic() - begun
            if run.returncode != 0:
                raise SystemExit(f"ansible-playbook failed:\n{run.stdout}{run.stderr}")
            second = fleet.bundle("v2", "installer", 2, ["fleet"])
            begun = time.monotonic()
            meterctl_push(fleet, second)
            meterctl_s = time.monotonic() - begun
            if not all(m.store_version() == 3 for m in fleet.meters):
                raise SystemExit("not every meter runs the second bundle")
        finally:
            for daemon in started:
                daemon.process.terminate()
            for daemon in started:
                daemon.process.wait(30)
                daemon.notify.close()
    results = {
        "meters": args.meters,
        "ansible_forks_10": {
            "seconds": round(ansible_s, 2),
            "meters_per_minute": round(args.meters * 60 / ansible_s, 1),
        },
        "meterctl_sequential": {
            "seconds": round(meterctl_s, 2),
            "meters_per_minute": round(args.meters * 60 / meterctl_s, 1),
        },
    }
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"rollout of one signed bundle to {args.meters} loopback meters")
    for name in ("ansible_forks_10", "meterctl_sequential"):
        r = results[name]
        assert isinstance(r, dict)
        print(f"  {name:<22} {r['seconds']:7.2f} s  {r['meters_per_minute']:7.1f} meters/minute")


if __name__ == "__main__":
    main()
