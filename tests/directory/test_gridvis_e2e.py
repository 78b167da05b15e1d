"""config/gridvis.toml end to end: a directory user logs in over SSH (real OpenSSH client, real slapd, real meterd).

The user gets exactly the permissions of the role their directory group maps
to, the log says the login took the ``ldap`` path and names the server, and
after the directory moves them to another group (or out of every mapped
group) the next login gets the new role (or is refused).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from meterd.policy.loader import load_policy
from meterd.seclog import EventType, Record, read_records
from tests.daemon.conftest import RunningDaemon, free_port, write_config
from tests.directory import faults
from tests.directory.pki import RuntimeCA
from tests.directory.slapd import PEOPLE, SERVICE_DN, Slapd, user_dn

ROOT = Path(__file__).resolve().parents[2]
SSH = [
    "-F", "/dev/null",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=10",
    "-o", "PubkeyAuthentication=no",
    "-o", "PreferredAuthentications=password,keyboard-interactive",
    "-o", "NumberOfPasswordPrompts=1",
]  # fmt: skip


def directory_section(
    server: Slapd, *, uri: str | None = None, start_tls: bool = False, extra: str = ""
) -> str:
    """The ``[directory]`` section of meterd.toml for ``server``."""
    return f"""
[directory]
backend = "ldap"
login_timeout = 5
{extra}
[directory.ldap]
servers = ["{uri or server.ldaps_uri}"]
start_tls = {"true" if start_tls else "false"}
ca = "{server.ca.cert}"
bind_dn = "{SERVICE_DN}"
bind_password_file = "{server.password_file}"
user_base = "{PEOPLE}"
user_filter = "(uid={{user}})"
group_mode = "memberof"
operation_timeout = 2
"""


def ssh_password(
    port: int, user: str, password: str, command: str = "whoami"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sshpass", "-p", password, "ssh", *SSH, "-p", str(port), f"{user}@127.0.0.1", command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def field(whoami: str, name: str) -> set[str]:
    for line in whoami.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return set(value.strip().split(","))
    raise AssertionError(f"no {name} line in {whoami!r}")


def permissions_of(whoami: str) -> set[str]:
    return field(whoami, "permissions")


def role_permissions(role: str) -> set[str]:
    policy = load_policy(tomllib.loads((ROOT / "config" / "gridvis.toml").read_text()))
    return {p.value for p in policy.roles[role].permissions}


def logins(state: Path, user: str) -> list[Record]:
    return [
        r
        for r in read_records(state / "security-log")
        if r.principal == user and r.event in (EventType.LOGIN_SUCCESS, EventType.LOGIN_FAILURE)
    ]


def test_a_directory_user_gets_their_groups_role_and_loses_it_when_the_group_changes(
    tmp_path: Path, slapd: Slapd, start_daemon: Callable[[Path], RunningDaemon]
) -> None:
    password = slapd.add_user("alice")
    placeholder = user_dn("placeholder")
    operators = slapd.add_group("GridVis-Operator", (user_dn("alice"),))
    supervisors = slapd.add_group("GridVis-Supervisor", (placeholder,))
    port = free_port()
    policy = tmp_path / "gridvis.toml"
    shutil.copy(ROOT / "config" / "gridvis.toml", policy)
    daemon = start_daemon(write_config(tmp_path, policy, ssh_port=port, extra=directory_section(slapd)))
    daemon.wait_for("READY=1")
    state = tmp_path / "state"

    done = ssh_password(port, "alice", password)
    assert done.returncode == 0, done.stderr
    assert permissions_of(done.stdout) == role_permissions("gv_operator")
    assert field(done.stdout, "roles") == {"gv_operator"}
    success = [r for r in logins(state, "alice") if r.event is EventType.LOGIN_SUCCESS][-1]
    assert success.detail["path"] == "ldap"
    assert success.detail["server"] == slapd.ldaps_uri

    # The directory moves alice to the supervisors: the next login has the supervisor's role.
    slapd.set_members(operators, (placeholder,))
    slapd.set_members(supervisors, (user_dn("alice"),))
    done = ssh_password(port, "alice", password)
    assert done.returncode == 0, done.stderr
    assert permissions_of(done.stdout) == role_permissions("gv_supervisor")

    # Out of every mapped group: refused, and the log says why.
    slapd.set_members(supervisors, (placeholder,))
    done = ssh_password(port, "alice", password)
    assert done.returncode != 0
    failure = logins(state, "alice")[-1]
    assert failure.event is EventType.LOGIN_FAILURE
    assert failure.detail["reason"] == "no_mapped_group"

    # A wrong password is the directory's refusal, recorded with the server and the step.
    done = ssh_password(port, "alice", password + "x")
    assert done.returncode != 0
    failure = logins(state, "alice")[-1]
    assert failure.detail["reason"] == "directory_refused"
    assert failure.detail["step"] == "user bind"
    assert failure.detail["server"] == slapd.ldaps_uri
    assert daemon.stop()[0] == 0


def demo_password(state: Path, user: str) -> str:
    for line in (state / "demo-credentials.txt").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == user:
            return fields[1]
    raise AssertionError(f"no demo password for {user}")


def test_a_stalled_directory_holds_up_neither_the_watchdog_nor_local_logins(
    tmp_path: Path, start_daemon: Callable[[Path], RunningDaemon]
) -> None:
    stall = faults.tls_stall()
    ca = RuntimeCA.create(tmp_path / "pki")
    port = free_port()
    policy = tmp_path / "gridvis.toml"
    shutil.copy(ROOT / "config" / "gridvis.toml", policy)
    password_file = tmp_path / "bind-password"
    password_file.write_text("service-password-made-at-run-time\n")
    password_file.chmod(0o600)
    section = f"""
[directory]
login_timeout = 4
workers = 2

[directory.ldap]
servers = ["ldaps://127.0.0.1:{stall.port}"]
ca = "{ca.cert}"
bind_dn = "{SERVICE_DN}"
bind_password_file = "{password_file}"
user_base = "{PEOPLE}"
operation_timeout = 4
"""
    daemon = start_daemon(write_config(tmp_path, policy, ssh_port=port, extra=section))
    try:
        daemon.wait_for("READY=1")
        stalled = [
            subprocess.Popen(
                [
                    "sshpass",
                    "-p",
                    "any-password",
                    "ssh",
                    *SSH,
                    "-p",
                    str(port),
                    f"remote{i}@127.0.0.1",
                    "whoami",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(6)
        ]
        time.sleep(0.5)  # the directory logins are now waiting on the stalled server
        started = time.monotonic()
        local = ssh_password(port, "auditor", demo_password(tmp_path / "state", "auditor"))
        took = time.monotonic() - started
        assert local.returncode == 0, local.stderr
        assert took < 3.5  # well before the stalled logins' budget runs out
        # The watchdog keeps pinging (every second with WATCHDOG_USEC=2 s) while they wait.
        daemon.wait_for("WATCHDOG=1", timeout=2)
        daemon.wait_for("WATCHDOG=1", timeout=2)
        for process in stalled:
            assert process.wait(30) != 0
        failures = [
            r for r in read_records(tmp_path / "state" / "security-log") if r.event is EventType.LOGIN_FAILURE
        ]
        remote = [r for r in failures if r.principal.startswith("remote")]
        assert remote
        assert {r.detail["reason"] for r in remote} == {"directory_unreachable"}
        assert daemon.stop()[0] == 0
    finally:
        stall.close()
