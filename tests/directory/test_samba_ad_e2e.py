"""Active Directory end to end: a real Samba AD DC, a real meterd on ``config/gridvis.toml``, OpenSSH clients.

Groups are resolved with the in-chain matching rule (nested membership), a
UPN logs in, a disabled account is refused and never falls back to the
offline cache, and a user in a mapped group gets exactly that role's
permissions until the directory takes them out of the group.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from meterd.seclog import EventType
from tests.daemon.conftest import RunningDaemon, free_port, write_config
from tests.directory import faults
from tests.directory.samba_ad import SambaAD, samba_ad  # noqa: F401  (the session's DC)
from tests.directory.test_gridvis_e2e import (
    SSH,
    field,
    logins,
    permissions_of,
    role_permissions,
    ssh_password,
)

ROOT = Path(__file__).resolve().parents[2]


def ad_section(server: SambaAD, uri: str) -> str:
    """``[directory]`` for the DC at ``uri`` (its own or a relay's on its address)."""
    return f"""
[directory]
backend = "ldap"
login_timeout = 5

[directory.ldap]
servers = ["{uri}"]
ca = "{server.ca_file}"
bind_dn = "{server.service_dn}"
bind_password_file = "{server.service_password_file}"
user_base = "CN=Users,{server.base_dn}"
user_filter = "(sAMAccountName={{user}})"
upn_suffix = "utility.example"
group_mode = "ad-in-chain"
group_base = "OU=Groups,{server.base_dn}"
operation_timeout = 3
"""


def start(
    tmp_path: Path, server: SambaAD, uri: str, start_daemon: Callable[[Path], RunningDaemon]
) -> tuple[RunningDaemon, int]:
    policy = tmp_path / "gridvis.toml"
    shutil.copy(ROOT / "config" / "gridvis.toml", policy)
    port = free_port()
    daemon = start_daemon(write_config(tmp_path, policy, ssh_port=port, extra=ad_section(server, uri)))
    daemon.wait_for("READY=1")
    return daemon, port


def sftp_password(port: int, user: str, password: str, batch: str) -> subprocess.CompletedProcess[str]:
    # sftp -b turns BatchMode on, which forbids passwords; the first value given wins.
    args = ["sshpass", "-p", password, "sftp", *SSH, "-o", "BatchMode=no", "-b", "-", "-P", str(port)]
    return subprocess.run(
        [*args, f"{user}@127.0.0.1"], input=batch, capture_output=True, text=True, timeout=60, check=False
    )


def test_nested_groups_upn_and_a_disabled_account_over_ssh(
    tmp_path: Path,
    samba_ad: SambaAD,  # noqa: F811
    start_daemon: Callable[[Path], RunningDaemon],
) -> None:
    daemon, port = start(tmp_path, samba_ad, samba_ad.uri, start_daemon)
    state = tmp_path / "state"

    # nina is in Field-Crew-North ⊂ Field-Crews ⊂ GridVis-Electrician: the electrician's role.
    nina = samba_ad.users["nina"]
    done = ssh_password(port, "nina", nina.password)
    assert done.returncode == 0, done.stderr
    assert field(done.stdout, "roles") == {"gv_electrician"}
    assert permissions_of(done.stdout) == role_permissions("gv_electrician")
    success = [r for r in logins(state, "nina") if r.event is EventType.LOGIN_SUCCESS][-1]
    assert (success.detail["path"], success.detail["server"]) == ("ldap", samba_ad.uri)

    # ulrich logs in by his UPN (found by userPrincipalName); GridVis-Analyst reads files only,
    # so his way in is SFTP (no terminal_access for a shell).
    ulrich = samba_ad.users["ulrich"]
    assert ulrich.upn == "ulrich.k@utility.example"
    listed = sftp_password(port, ulrich.upn, ulrich.password, "ls /\n")
    assert listed.returncode == 0, listed.stderr
    success = [r for r in logins(state, ulrich.upn) if r.event is EventType.LOGIN_SUCCESS][-1]
    assert success.detail["path"] == "ldap"
    assert ssh_password(port, ulrich.upn, ulrich.password).returncode != 0  # no shell for an analyst

    # dora is in GridVis-Operator but disabled: the directory refuses her bind.
    dora = samba_ad.users["dora"]
    assert ssh_password(port, "dora", dora.password).returncode != 0
    failure = logins(state, "dora")[-1]
    assert (failure.detail["reason"], failure.detail["step"]) == ("directory_refused", "user bind")
    assert daemon.stop()[0] == 0


def test_a_disabled_account_never_falls_back_to_the_offline_cache(
    tmp_path: Path,
    samba_ad: SambaAD,  # noqa: F811
    start_daemon: Callable[[Path], RunningDaemon],
) -> None:
    name = "dana-" + secrets.token_hex(3)
    dana = samba_ad.add_user(name, groups=("GridVis-Operator",))
    # Through a relay on the DC's own address, which the test can cut: the directory unreachable.
    relay = faults.relay(samba_ad.host, samba_ad.port)
    try:
        daemon, port = start(tmp_path, samba_ad, f"ldaps://{samba_ad.host}:{relay.port}", start_daemon)
        state = tmp_path / "state"
        assert ssh_password(port, name, dana.password).returncode == 0  # online: cached for offline use
        samba_ad.disable_user(name)
        assert ssh_password(port, name, dana.password).returncode != 0
        failure = logins(state, name)[-1]
        assert (failure.detail["reason"], failure.detail["step"]) == ("directory_refused", "user bind")
        relay.close()
        # The directory is gone now, and the password it refused is not usable offline.
        assert ssh_password(port, name, dana.password).returncode != 0
        failure = logins(state, name)[-1]
        assert failure.event is EventType.LOGIN_FAILURE
        assert failure.detail["reason"] == "directory_unreachable"
        assert not [r for r in logins(state, name) if r.detail.get("path") == "offline-cache"]
        assert daemon.stop()[0] == 0
    finally:
        relay.close()
        samba_ad.delete(name)


def test_gridvis_a_mapped_group_gives_exactly_its_role_until_the_user_leaves_it(
    tmp_path: Path,
    samba_ad: SambaAD,  # noqa: F811
    start_daemon: Callable[[Path], RunningDaemon],
) -> None:
    name = "gwen-" + secrets.token_hex(3)
    gwen = samba_ad.add_user(name, groups=("GridVis-Supervisor",))
    try:
        daemon, port = start(tmp_path, samba_ad, samba_ad.uri, start_daemon)
        state = tmp_path / "state"
        done = ssh_password(port, name, gwen.password)
        assert done.returncode == 0, done.stderr
        assert field(done.stdout, "roles") == {"gv_supervisor"}
        assert permissions_of(done.stdout) == role_permissions("gv_supervisor")

        # Moved to the operators: the next login has the operator's permissions and no more.
        samba_ad.add_to_group("GridVis-Operator", name)
        samba_ad.remove_from_group("GridVis-Supervisor", name)
        done = ssh_password(port, name, gwen.password)
        assert done.returncode == 0, done.stderr
        assert permissions_of(done.stdout) == role_permissions("gv_operator")

        # Out of every mapped group: the next login is refused.
        samba_ad.remove_from_group("GridVis-Operator", name)
        assert ssh_password(port, name, gwen.password).returncode != 0
        assert logins(state, name)[-1].detail["reason"] == "no_mapped_group"
        assert daemon.stop()[0] == 0
    finally:
        samba_ad.delete(name)
