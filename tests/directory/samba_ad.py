"""A real Samba Active Directory domain controller for tests, LDAPS only, on a loopback address.

The domain is ``UTILITY.EXAMPLE`` (base ``DC=utility,DC=example``), so the
``directory_group`` DNs of ``config/gridvis.toml`` (``CN=GridVis-…,OU=Groups,
DC=utility,DC=example``) exist verbatim.  Everything lives in one temporary
directory with its own smb.conf: the system's /etc/samba is never read.

Samba's LDAP ports are fixed (389, 636, 3268, 3269), so each run binds a
random address of 127.0.0.0/8 (bind interfaces only) and two runs on one
machine do not collide.  Only the ``ldap`` service runs; LDAPS uses a
certificate from a CA made at run time that names that address and
``dc1.utility.example``.

Provisioning takes seconds, so one domain serves the whole test session:
use the session-scoped ``samba_ad`` fixture (import it into the test module)::

    from tests.directory.samba_ad import SambaAD, samba_ad  # noqa: F401

Seeded users (``samba_ad.users[name]``, passwords generated per run):
``olivia`` (GridVis-Operator), ``nina`` (Field-Crew-North ⊂ Field-Crews ⊂
GridVis-Electrician: nested), ``ulrich`` (UPN ``ulrich.k@utility.example``,
GridVis-Analyst), ``norbert`` (no GridVis group), ``dora`` (GridVis-Operator,
account disabled), and ``meter-svc``, the service account.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ldap3
import pytest
from ldap3.core.exceptions import LDAPBindError, LDAPException

from tests.certs import write_server_pki
from tests.directory.samba_provision import (
    BASE_DN,
    FQDN,
    GRIDVIS_GROUPS,
    GROUPS_OU,
    LDAPS_PORT,
    READY_TIMEOUT,
    REALM,
    SAMBA,
    SAMBA_TOOL,
    SYSTEM_PYTHON,
    free_loopback_address,
    new_password,
    provision,
    run_samdb,
    smb_conf,
)

__all__ = ["FQDN", "GRIDVIS_GROUPS", "AdUser", "SambaAD", "running_samba_ad", "samba_ad"]


@dataclass(frozen=True)
class AdUser:
    """A directory user.

    Attributes:
        name: sAMAccountName (also the CN).
        password: Its password.
        dn: Its distinguished name.
        upn: Its userPrincipalName.
    """

    name: str
    password: str = field(repr=False)
    dn: str
    upn: str


@dataclass
class SambaAD:
    """A running domain controller; see the module docstring.

    Attributes:
        directory: Its private directory (smb.conf, databases, TLS files, log).
        host: The loopback address it listens on (127.x.y.z).
        port: The LDAPS port (636).
        ca_file: PEM of the CA that signed its certificate.
        base_dn: ``DC=utility,DC=example``.
        service_dn: DN of the service account ``meter-svc``.
        service_password_file: That account's password in a 0600 file.
        admin_password: The Administrator's password.
        users: The seeded users (and those :meth:`add_user` added) by name.
        timings: Seconds taken by ``provision``, ``seed`` and ``start`` (start until LDAPS answers).
    """

    directory: Path
    host: str
    ca_file: Path
    service_dn: str
    service_password_file: Path
    admin_password: str = field(repr=False)
    users: dict[str, AdUser] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    port: int = LDAPS_PORT
    base_dn: str = BASE_DN
    realm: str = REALM
    process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """``ldaps://127.x.y.z:636``; the certificate names this address (and ``dc1.utility.example``)."""
        return f"ldaps://{self.host}:{self.port}"

    @property
    def starttls_uri(self) -> str:
        """``ldap://127.x.y.z:389``: plain LDAP, where a simple bind needs StartTLS first."""
        return f"ldap://{self.host}:389"

    @property
    def conf(self) -> Path:
        """The server's own smb.conf."""
        return self.directory / "etc" / "smb.conf"

    @property
    def log_file(self) -> Path:
        """What ``samba`` printed (read it when a test fails)."""
        return self.directory / "samba.log"

    @property
    def admin_dn(self) -> str:
        """The Administrator's DN."""
        return f"CN=Administrator,CN=Users,{self.base_dn}"

    def group_dn(self, name: str) -> str:
        """DN of a group created by the fixture (all live in ``OU=Groups``)."""
        return f"CN={name},{GROUPS_OU},{self.base_dn}"

    def user_dn(self, name: str) -> str:
        """DN of a user created by the fixture (all live in ``CN=Users``)."""
        return f"CN={name},CN=Users,{self.base_dn}"

    def samdb(self, operations: Sequence[dict[str, Any]]) -> None:
        """Apply changes to the directory with Samba's own tools (works while the DC runs)."""
        run_samdb(self.conf, operations)

    def add_user(
        self, name: str, *, password: str | None = None, upn: str | None = None, groups: Sequence[str] = ()
    ) -> AdUser:
        """Create a user in ``CN=Users`` (UPN ``name@utility.example`` unless given) in ``groups``."""
        user = AdUser(name, password or new_password(), self.user_dn(name), upn or f"{name}@{REALM.lower()}")
        ops: list[dict[str, Any]] = [{"op": "user", "name": name, "password": user.password, "upn": upn}]
        ops += [{"op": "members", "group": g, "members": [name], "add": True} for g in groups]
        self.samdb(ops)
        self.users[name] = user
        return user

    def add_group(self, name: str, *, member_of: Sequence[str] = ()) -> str:
        """Create a group in ``OU=Groups``, itself a member of ``member_of``; returns its DN."""
        ops: list[dict[str, Any]] = [{"op": "group", "name": name, "ou": GROUPS_OU}]
        ops += [{"op": "members", "group": g, "members": [name], "add": True} for g in member_of]
        self.samdb(ops)
        return self.group_dn(name)

    def add_to_group(self, group: str, member: str) -> None:
        """Make the user or group ``member`` (sAMAccountName) a member of ``group``."""
        self.samdb([{"op": "members", "group": group, "members": [member], "add": True}])

    def remove_from_group(self, group: str, member: str) -> None:
        """Take ``member`` out of ``group``."""
        self.samdb([{"op": "members", "group": group, "members": [member], "add": False}])

    def set_password(self, name: str, password: str) -> None:
        """Reset a user's password (as an administrator would)."""
        self.samdb([{"op": "password", "name": name, "password": password}])
        if name in self.users:
            old = self.users[name]
            self.users[name] = AdUser(old.name, password, old.dn, old.upn)

    def disable_user(self, name: str) -> None:
        """Disable an account."""
        self.samdb([{"op": "disable", "name": name}])

    def delete(self, name: str) -> None:
        """Delete a user or group by sAMAccountName."""
        self.samdb([{"op": "delete", "name": name}])
        self.users.pop(name, None)

    def connect(self, user: str, password: str, *, timeout: float = 5.0) -> ldap3.Connection:
        """An ldap3 connection bound over LDAPS (CA and host name checked) as ``user`` (a DN or UPN).

        Raises:
            LDAPException: If the bind fails.
        """
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca_file), version=ssl.PROTOCOL_TLS_CLIENT
        )
        server = ldap3.Server(self.host, port=self.port, use_ssl=True, tls=tls, connect_timeout=timeout)
        # ldap3 packs receive_timeout into SO_RCVTIMEO as whole seconds: it must be an int.
        connection = ldap3.Connection(
            server, user=user, password=password, receive_timeout=max(1, round(timeout))
        )
        # ldap3 checks the host name with ssl.match_hostname, deprecated since Python 3.7.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "ssl.match_hostname", DeprecationWarning)
            try:
                bound = connection.bind()
            except LDAPException:
                connection.unbind()
                raise
        if not bound:
            result = connection.result
            connection.unbind()
            raise LDAPBindError(f"bind as {user}: {result}")
        return connection


@contextmanager
def running_samba_ad(directory: Path) -> Iterator[SambaAD]:
    """Provision a domain in ``directory``, seed it, run ``samba`` until the block ends.

    Raises:
        RuntimeError: If provisioning fails or LDAPS does not answer within 60 s (the log is in the message).
    """
    if SAMBA is None or SAMBA_TOOL is None or not os.path.exists(SYSTEM_PYTHON):
        pytest.fail("Samba is not installed (make system-deps installs the AD DC packages)")
    if os.geteuid() != 0:
        pytest.fail("a Samba AD DC needs root")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    host = free_loopback_address()
    admin_password = new_password()
    start = time.monotonic()
    provision(directory, host, admin_password)
    provisioned = time.monotonic()
    tls_dir = directory / "tls"
    tls_dir.mkdir(mode=0o700)
    tls = write_server_pki(tls_dir, FQDN, [FQDN], [host])
    (directory / "etc" / "smb.conf").write_text(smb_conf(directory, host, tls))
    server = SambaAD(
        directory=directory,
        host=host,
        ca_file=tls[0],
        service_dn=f"CN=meter-svc,CN=Users,{BASE_DN}",
        service_password_file=directory / "meter-svc.password",
        admin_password=admin_password,
    )
    _seed(server)
    seeded = time.monotonic()
    with server.log_file.open("wb") as out:
        server.process = subprocess.Popen(
            [SAMBA, "--foreground", "--debug-stdout", "--model=single", "-s", str(server.conf)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ldaps(server)
        ready = time.monotonic()
        server.timings = {
            "provision": provisioned - start,
            "seed": seeded - provisioned,
            "start": ready - seeded,
        }
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def _wait_ldaps(server: SambaAD) -> None:
    """Until a TLS handshake verifies the certificate, then the service account binds."""
    assert server.process is not None
    context = ssl.create_default_context(cafile=str(server.ca_file))
    end = time.monotonic() + READY_TIMEOUT
    problem = ""
    while time.monotonic() < end and server.process.poll() is None:
        try:
            with (
                socket.create_connection((server.host, server.port), timeout=2) as raw,
                context.wrap_socket(raw, server_hostname=server.host),
            ):
                pass
        except OSError as e:
            problem = str(e)
            time.sleep(0.1)
            continue
        try:
            server.connect(server.service_dn, server.users["meter-svc"].password).unbind()
        except (OSError, LDAPException) as e:
            problem = str(e)
            break
        return
    log = server.log_file.read_text(errors="replace")[-4000:]
    raise RuntimeError(f"Samba AD did not answer LDAPS ({problem}; exit {server.process.poll()}):\n{log}")


#: The session's one server and what stops it (see :func:`samba_ad`).
_SHARED: dict[str, tuple[ExitStack, SambaAD]] = {}


def _stop_shared() -> None:
    if "server" in _SHARED:
        _SHARED.pop("server")[0].close()


@pytest.fixture(scope="session")
def samba_ad(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> SambaAD:
    """The session's domain controller, provisioned and started on first use, stopped at the session's end.

    One instance however many modules import this fixture (each import would otherwise
    make its own session-scoped copy).
    """
    if "server" not in _SHARED:
        stack = ExitStack()
        server = stack.enter_context(running_samba_ad(tmp_path_factory.mktemp("samba-ad")))
        _SHARED["server"] = (stack, server)
        pytestconfig.add_cleanup(_stop_shared)
    return _SHARED["server"][1]


def _seed(server: SambaAD) -> None:
    ops: list[dict[str, Any]] = [{"op": "ou", "dn": f"{GROUPS_OU},{BASE_DN}"}]
    ops += [
        {"op": "group", "name": g, "ou": GROUPS_OU}
        for g in (*GRIDVIS_GROUPS, "Field-Crews", "Field-Crew-North")
    ]
    ops += [
        {"op": "members", "group": "GridVis-Electrician", "members": ["Field-Crews"], "add": True},
        {"op": "members", "group": "Field-Crews", "members": ["Field-Crew-North"], "add": True},
    ]
    users = {
        "meter-svc": ((), None),
        "olivia": (("GridVis-Operator",), None),
        "nina": (("Field-Crew-North",), None),
        "ulrich": (("GridVis-Analyst",), "ulrich.k@utility.example"),
        "norbert": ((), None),
        "dora": (("GridVis-Operator",), None),
    }
    for name, (groups, upn) in users.items():
        user = AdUser(name, new_password(), server.user_dn(name), upn or f"{name}@{REALM.lower()}")
        server.users[name] = user
        ops.append({"op": "user", "name": name, "password": user.password, "upn": upn})
        ops += [{"op": "members", "group": g, "members": [name], "add": True} for g in groups]
    ops.append({"op": "disable", "name": "dora"})
    server.samdb(ops)
    server.service_password_file.write_text(server.users["meter-svc"].password + "\n")
    server.service_password_file.chmod(0o600)
