"""Provisioning the test domain: samba-tool, its own smb.conf, Samba's SamDB API for changes.

Nothing here reads or writes the system's Samba configuration: every command is
given the domain's own smb.conf (``-s``/``--targetdir``).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REALM = "UTILITY.EXAMPLE"
NETBIOS_DOMAIN = "UTILITY"
BASE_DN = "DC=utility,DC=example"
GROUPS_OU = "OU=Groups"
HOST_NAME = "dc1"
FQDN = "dc1.utility.example"
LDAPS_PORT = 636
READY_TIMEOUT = 60.0
GRIDVIS_GROUPS = (
    "GridVis-Admin",
    "GridVis-SystemAdmin",
    "GridVis-Commissioning",
    "GridVis-Supervisor",
    "GridVis-EnergyCommissioner",
    "GridVis-Electrician",
    "GridVis-IT",
    "GridVis-Analyst",
    "GridVis-Editor",
    "GridVis-Observer",
    "GridVis-Operator",
)
SAMBA = shutil.which("samba", path="/usr/sbin:/usr/bin:/sbin:/bin")
SAMBA_TOOL = shutil.which("samba-tool", path="/usr/bin:/usr/sbin")
#: Samba's Python bindings belong to the system interpreter, not the test venv.
SYSTEM_PYTHON = "/usr/bin/python3"

# Runs in the system interpreter: Samba's own SamDB API (what samba-tool uses), one process for
# many changes instead of one samba-tool start each.  Reads a JSON list of operations on stdin.
SAMDB_SCRIPT = r"""
import json, sys
import ldb
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB

lp = LoadParm()
lp.load(sys.argv[1])
db = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)

def by_name(name):
    return "(sAMAccountName=%s)" % ldb.binary_encode(name)

def dn_of(name):
    found = db.search(db.domain_dn(), scope=ldb.SCOPE_SUBTREE, expression=by_name(name), attrs=[])
    if len(found) != 1:
        sys.exit("no single object named %r" % name)
    return found[0].dn

for op in json.load(sys.stdin):
    kind = op["op"]
    if kind == "ou":
        db.create_ou(op["dn"])
    elif kind == "user":
        db.newuser(op["name"], op["password"], userou=op.get("ou"), useusernameascn=True)
        if op.get("upn"):
            m = ldb.Message(dn_of(op["name"]))
            m["userPrincipalName"] = ldb.MessageElement(op["upn"], ldb.FLAG_MOD_REPLACE, "userPrincipalName")
            db.modify(m)
    elif kind == "group":
        db.newgroup(op["name"], groupou=op.get("ou"))
    elif kind == "members":
        db.add_remove_group_members(op["group"], op["members"], add_members_operation=op["add"])
    elif kind == "password":
        db.setpassword(by_name(op["name"]), op["password"])
    elif kind == "disable":
        db.disable_account(by_name(op["name"]))
    elif kind == "delete":
        db.delete(dn_of(op["name"]))
    else:
        sys.exit("unknown operation %r" % kind)
"""


def new_password() -> str:
    """A password that meets the domain's default complexity rules."""
    return secrets.token_urlsafe(12) + "-Aa1"


def run(argv: list[str], stdin: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, env=env, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} {argv[1]} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return done.stdout


def free_loopback_address() -> str:
    """A 127.x.y.z on which LDAPS's fixed ports are free (Linux routes all of 127/8 to lo)."""
    # SystemRandom: pytest-randomly reseeds the random module, and two runs must not pick alike.
    pick = random.SystemRandom()
    for _ in range(50):
        host = f"127.{pick.randint(100, 250)}.{pick.randint(1, 254)}.{pick.randint(1, 254)}"
        try:
            for port in (389, 636, 3268, 3269):
                with socket.create_server((host, port)):
                    pass
        except OSError:
            continue
        return host
    raise RuntimeError("no free loopback address for Samba's LDAP ports")


def smb_conf(directory: Path, host: str, tls: tuple[Path, Path, Path]) -> str:
    ca, cert, key = tls
    d = directory
    return f"""\
[global]
    netbios name = {HOST_NAME.upper()}
    realm = {REALM}
    workgroup = {NETBIOS_DOMAIN}
    server role = active directory domain controller
    server services = ldap
    interfaces = {host}/8
    bind interfaces only = yes
    private dir = {d}/private
    state directory = {d}/state
    cache directory = {d}/cache
    lock directory = {d}
    pid directory = {d}
    binddns dir = {d}/bind-dns
    ncalrpc dir = {d}/ncalrpc
    log file = {d}/log.%m
    idmap_ldb:use rfc2307 = yes
    ldap server require strong auth = yes
    tls enabled = yes
    tls keyfile = {key}
    tls certfile = {cert}
    tls cafile = {ca}
    tls priority = NORMAL:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1
"""


def provision(directory: Path, host: str, admin_password: str) -> None:
    """``samba-tool domain provision`` into ``directory`` (which gets its own etc/smb.conf)."""
    assert SAMBA_TOOL is not None
    # Without --configfile samba-tool would first read the system's /etc/samba/smb.conf.
    empty = directory / "provision-empty.conf"
    empty.write_text("")
    run(
        [
            SAMBA_TOOL,
            "domain",
            "provision",
            f"--configfile={empty}",
            f"--realm={REALM}",
            f"--domain={NETBIOS_DOMAIN}",
            "--server-role=dc",
            "--dns-backend=NONE",
            "--use-rfc2307",
            f"--host-name={HOST_NAME}",
            f"--host-ip={host}",
            f"--adminpass={admin_password}",
            f"--targetdir={directory}",
            f"--option=interfaces = {host}/8",
            "--option=bind interfaces only = yes",
            f"--option=log file = {directory}/log.%m",
        ]
    )


def run_samdb(conf: Path, operations: Sequence[dict[str, Any]]) -> None:
    """Apply ``operations`` (see :data:`SAMDB_SCRIPT`) to the domain of ``conf``."""
    run([SYSTEM_PYTHON, "-c", SAMDB_SCRIPT, str(conf)], json.dumps(list(operations)))
