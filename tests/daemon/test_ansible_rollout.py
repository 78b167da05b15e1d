"""The Ansible collection against ten real meters: check/diff, staged rollout, idempotence, refusals, reports."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon.conftest import RunningDaemon
from tests.daemon.fleet import ANSIBLE, start_fleet

StartDaemon = Callable[[Path], RunningDaemon]
ROLLOUT = str(ANSIBLE / "examples" / "rollout.yml")
REPORT = str(ANSIBLE / "examples" / "report.yml")
PUSH_ALL = """
- hosts: meters
  gather_facts: false
  connection: local
  tasks:
    - meterd.meter.policy_push:
        bundle: "{{ bundle }}"
"""


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counts per host."""
    found = {}
    for host, counts in re.findall(r"^(m\d\d)\s+:\s+(.*)$", stdout, re.MULTILINE):
        found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return found


@pytest.mark.slow
def test_rollout_with_ansible_to_ten_meters(tmp_path: Path, start_daemon: StartDaemon) -> None:
    # m02 is the one meter outside substation A.
    fleet = start_fleet(
        tmp_path, start_daemon, 10, lambda n: ["fleet", *(["substation-a"] if n != 2 else [])]
    )
    meters = fleet.meters
    v1 = fleet.bundle("v1", "engineer", 1, ["fleet"])

    # Check and diff mode: the meters' dry run, nothing changes.
    checked = fleet.playbook(ROLLOUT, "-e", f"bundle={v1}", "--check", "--diff")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("+ operator: comm_config @ /") == 10
    assert checked.stdout.count("- operator: peak_demand_reset @ /") == 10
    assert all(m.store_version() == 1 for m in meters)

    # A clean staged rollout.
    clean = fleet.playbook(ROLLOUT, "-e", f"bundle={v1}")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert {h: (c["changed"], c["failed"]) for h, c in recap(clean.stdout).items()} == {
        m.name: (1, 0) for m in meters
    }
    assert all(m.store_version() == 2 for m in meters)

    # The second run changes nothing: every meter already runs the bundle's policy.
    again = fleet.playbook(ROLLOUT, "-e", f"bundle={v1}")
    assert again.returncode == 0, again.stdout + again.stderr
    assert {h: c["changed"] for h, c in recap(again.stdout).items()} == dict.fromkeys(
        (m.name for m in meters), 0
    )
    assert all(m.store_version() == 2 for m in meters)

    # The compliance report, into a folder the playbook makes (as the README runs it).
    report_dir = tmp_path / "report"
    report = fleet.playbook(REPORT, "-e", f"report_dir={report_dir}")
    assert report.returncode == 0, report.stdout + report.stderr
    for meter in meters:
        status = json.loads((report_dir / f"{meter.name}.json").read_text())
        assert status["meter_id"] == meter.name
        assert status["bundle_version"] == 1
        assert status["store_version"] == 2
        assert status["policy_version"] == 1
        assert status["bundle_sha256"] == json.loads(v1.read_text())["signed"]["policy_sha256"]

    # A bundle for substation A: m02 (the second batch) refuses it, and the third batch is untouched.
    v2 = fleet.bundle("v2", "installer", 2, ["substation-a"])
    stopped = fleet.playbook(ROLLOUT, "-e", f"bundle={v2}")
    assert stopped.returncode != 0
    assert "bundle: signed.targets: not targeted at this meter" in stopped.stdout
    assert [m.store_version() for m in meters] == [3, 2, 2, 2, 2, 2, 2, 2, 2, 2]
    assert set(recap(stopped.stdout)) == {"m01", "m02"}

    # The old bundle pushed again is refused on every meter (replay), wherever it has got to.
    playbook = tmp_path / "push-all.yml"
    playbook.write_text(PUSH_ALL)
    replay = fleet.playbook(str(playbook), "-e", f"bundle={v1}")
    assert replay.returncode != 0
    counts = recap(replay.stdout)
    # m02..m10 still run v1's policy, so for them the push is already done; m01 refuses it as a replay.
    assert counts["m01"]["failed"] == 1
    assert "bundle: signed.version: version 1 is not above 2" in replay.stdout
    old = fleet.bundle("v1-old", "operator", 1, ["fleet"])
    replay_old = fleet.playbook(str(playbook), "-e", f"bundle={old}")
    assert {h: c["failed"] for h, c in recap(replay_old.stdout).items()} == dict.fromkeys(
        (m.name for m in meters), 1
    )
    refused = re.findall(
        r"^fatal: \[(m\d\d)\]: FAILED! => .*a replayed or rolled-back bundle", replay_old.stdout, re.M
    )
    assert sorted(refused) == [m.name for m in meters]
    assert [m.store_version() for m in meters] == [3, 2, 2, 2, 2, 2, 2, 2, 2, 2]
