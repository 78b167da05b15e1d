"""RADIUS directory login end to end: a real meterd, a real FreeRADIUS, the real OpenSSH client.

A RADIUS user's roles come from meterd's vendor attribute (multi-valued) and
from the ``Class`` groups the policy maps through ``directory_group``; the
scope attribute narrows them.  A reject is refused; with the server stopped,
the offline cache and break-glass behave as for LDAP, and every login says
``path = "radius"`` (or the fallback it took) in the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from meterd.policy.loader import load_policy
from meterd.seclog import EventType, Record, read_records
from tests.daemon.conftest import RunningDaemon, free_port, write_config
from tests.directory.freeradius import FreeRadius, RadiusUser, freeradius
from tests.directory.test_gridvis_e2e import demo_password, field, logins, permissions_of, ssh_password

POLICY = """
[policy]
name = "RADIUS end to end"
version = 1

[groups.grid_operators]
roles = ["operator"]
directory_group = "grid-operators"

[users.breakglass]
roles = ["rbacmnt"]
break_glass = true

[users.auditor]
roles = ["secaud"]
"""

USERS = (
    RadiusUser("rad-operator", classes=("grid-operators", "unmapped-group")),
    RadiusUser("rad-engineer", roles=("engineer", "viewer")),
    RadiusUser("rad-clock", roles=("engineer",), scope="/meter/clock"),
    RadiusUser("rad-nogroup", classes=("unmapped-group",)),
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FreeRadius]:
    with freeradius(tmp_path / "freeradius", USERS) as running:
        yield running


def role_permissions(*roles: str) -> set[str]:
    policy = load_policy({"policy": {"name": "builtin", "version": 1}})
    return {p.value for role in roles for p in policy.roles[role].permissions}


def last(state: Path, user: str, event: EventType) -> Record:
    return [r for r in logins(state, user) if r.event is event][-1]


def start(
    tmp_path: Path, server: FreeRadius, start_daemon: Callable[[Path], RunningDaemon]
) -> tuple[RunningDaemon, int]:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    section = f"""
[directory]
backend = "radius"
login_timeout = 2

[directory.radius]
servers = ["{server.address}"]
secret_file = "{server.secret_file}"
timeout = 0.4
retries = 1
"""
    port = free_port()
    daemon = start_daemon(write_config(tmp_path, policy, ssh_port=port, extra=section))
    daemon.wait_for("READY=1")
    return daemon, port


def test_radius_users_get_their_roles_groups_and_scope_over_ssh(
    tmp_path: Path, server: FreeRadius, start_daemon: Callable[[Path], RunningDaemon]
) -> None:
    daemon, port = start(tmp_path, server, start_daemon)
    state = tmp_path / "state"

    # Class "grid-operators" maps to the operator role; the unmapped Class adds nothing.
    operator = server.users["rad-operator"]
    done = ssh_password(port, operator.name, operator.password)
    assert done.returncode == 0, done.stderr
    assert field(done.stdout, "roles") == {"operator"}
    assert permissions_of(done.stdout) == role_permissions("operator")
    success = last(state, operator.name, EventType.LOGIN_SUCCESS)
    assert success.detail["path"] == "radius"
    assert success.detail["server"] == server.uri

    # Two values of the role attribute: both roles.
    engineer = server.users["rad-engineer"]
    done = ssh_password(port, engineer.name, engineer.password)
    assert done.returncode == 0, done.stderr
    assert field(done.stdout, "roles") == {"engineer", "viewer"}
    assert permissions_of(done.stdout) == role_permissions("engineer", "viewer")
    assert last(state, engineer.name, EventType.LOGIN_SUCCESS).detail["path"] == "radius"

    # The scope attribute narrows the role to its subtree: the clock, not the settings, nor "/".
    clock = server.users["rad-clock"]
    done = ssh_password(port, clock.name, clock.password, "show time")
    assert done.returncode == 0, done.stderr
    for outside in ("show settings", "whoami"):
        refused = ssh_password(port, clock.name, clock.password, outside)
        assert refused.returncode != 0
        assert "denied: terminal_access" in refused.stdout
    assert last(state, clock.name, EventType.LOGIN_SUCCESS).detail["path"] == "radius"

    # Access-Accept with no mapped group and no role: refused, and the log says why.
    nogroup = server.users["rad-nogroup"]
    assert ssh_password(port, nogroup.name, nogroup.password).returncode != 0
    assert last(state, nogroup.name, EventType.LOGIN_FAILURE).detail["reason"] == "no_mapped_group"

    # Access-Reject: refused, naming the server and the step.
    assert ssh_password(port, operator.name, operator.password + "x").returncode != 0
    failure = last(state, operator.name, EventType.LOGIN_FAILURE)
    assert failure.detail["reason"] == "directory_refused"
    assert failure.detail["path"] == "radius"
    assert failure.detail["server"] == server.uri
    assert failure.detail["step"] == "access-request"
    assert daemon.stop()[0] == 0


def test_an_unreachable_radius_server_falls_back_to_the_offline_cache_and_break_glass(
    tmp_path: Path, server: FreeRadius, start_daemon: Callable[[Path], RunningDaemon]
) -> None:
    daemon, port = start(tmp_path, server, start_daemon)
    state = tmp_path / "state"
    operator = server.users["rad-operator"]
    breakglass = demo_password(state, "breakglass")
    assert ssh_password(port, operator.name, operator.password).returncode == 0
    # While the server answers, break-glass is refused.
    assert ssh_password(port, "breakglass", breakglass).returncode != 0
    reason = last(state, "breakglass", EventType.LOGIN_FAILURE).detail["reason"]
    assert reason == "break_glass_directory_reachable"

    server.pause()
    try:
        done = ssh_password(port, operator.name, operator.password)
        assert done.returncode == 0, done.stderr
        assert field(done.stdout, "roles") == {"operator"}
        assert last(state, operator.name, EventType.LOGIN_SUCCESS).detail["path"] == "offline-cache"
        # A wrong password offline is refused as unreachable, never let through.
        assert ssh_password(port, operator.name, operator.password + "x").returncode != 0
        failure = last(state, operator.name, EventType.LOGIN_FAILURE)
        assert failure.detail["reason"] == "directory_unreachable"
        # A RADIUS user never seen online has nothing cached.
        engineer = server.users["rad-engineer"]
        assert ssh_password(port, engineer.name, engineer.password).returncode != 0
        # Break-glass works now, with an alarm.
        done = ssh_password(port, "breakglass", breakglass)
        assert done.returncode == 0, done.stderr
        assert last(state, "breakglass", EventType.LOGIN_SUCCESS).detail["path"] == "break-glass"
        alarms = [r for r in read_records(state / "security-log") if r.event is EventType.ALARM]
        assert alarms[-1].detail["alarm"] == "break_glass_login"
        assert alarms[-1].detail["backend"] == "radius"
    finally:
        server.resume()
    assert daemon.stop()[0] == 0
