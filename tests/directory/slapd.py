"""A real OpenLDAP ``slapd`` on 127.0.0.1 for directory-login tests.

Its own configuration and database in a temporary directory, ``ldaps://``
and ``ldap://`` (StartTLS) listeners with a certificate from a CA made at run
time, the ``memberOf`` overlay, and an ``ldapi://`` socket through which the
test (as the directory's administrator, with ``ldapadd``/``ldapmodify``) adds
users and groups and changes memberships.  Every password is generated at
run time.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from tests.directory.pki import RuntimeCA

SUFFIX = "dc=utility,dc=example"
PEOPLE = f"ou=People,{SUFFIX}"
GROUPS = f"ou=Groups,{SUFFIX}"
SERVICE_DN = f"cn=meterd,ou=Services,{SUFFIX}"
ADMIN_DN = f"cn=admin,{SUFFIX}"
SBIN = ("/usr/sbin", "/sbin")


def find(program: str) -> str | None:
    """The path of ``program`` (slapd lives in sbin, which an unprivileged PATH may lack)."""
    return shutil.which(program, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_CONFIG = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
# Active Directory's UPN, so UPN logins can be tried against OpenLDAP too.
attributetype ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
TLSProtocolMin 3.3
# A simple bind needs TLS (or the local ldapi socket): no password crosses in clear.
security simple_bind=71
database mdb
suffix "{suffix}"
rootdn "{admin}"
rootpw {admin_password}
directory {dir}/data
maxsize 16777216
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
access to attrs=userPassword by self =xw by anonymous auth by * none
access to * by dn.exact="{service}" read by * none
"""


@dataclass
class Slapd:
    """A running ``slapd``; see the module docstring."""

    root: Path
    ca: RuntimeCA
    ldaps_port: int
    ldap_port: int
    admin_password: str
    service_password: str
    process: subprocess.Popen[bytes] | None = None
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def ldap_uri(self) -> str:
        return f"ldap://127.0.0.1:{self.ldap_port}"

    @property
    def ldapi_uri(self) -> str:
        return "ldapi://" + urllib.parse.quote(str(self.root / "ldapi"), safe="")

    @property
    def password_file(self) -> Path:
        path = self.root / "bind-password"
        if not path.exists():
            path.write_text(self.service_password + "\n")
            path.chmod(0o600)
        return path

    @classmethod
    def start(cls, root: Path) -> Slapd:
        """Configure, populate with the base entries and start a server below ``root``."""
        root.mkdir(parents=True, exist_ok=True)
        (root / "data").mkdir()
        ca = RuntimeCA.create(root / "pki")
        cert, key = ca.server(root / "pki")
        server = cls(root, ca, free_port(), free_port(), secrets.token_urlsafe(18), secrets.token_urlsafe(18))
        (root / "slapd.conf").write_text(
            _CONFIG.format(
                dir=root,
                ca=ca.cert,
                cert=cert,
                key=key,
                suffix=SUFFIX,
                admin=ADMIN_DN,
                admin_password=server.admin_password,
                service=SERVICE_DN,
            )
        )
        server._run()
        server.ldif(
            f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: utility\no: Utility\n\n"
            + "".join(
                f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n\n"
                for ou in ("People", "Groups", "Services")
            )
            + f"dn: {SERVICE_DN}\nobjectClass: person\ncn: meterd\nsn: meterd\n"
            f"userPassword: {server.service_password}\n"
        )
        return server

    def _run(self) -> None:
        slapd = find("slapd")
        assert slapd, "slapd is not installed (scripts/system-deps.sh installs it)"
        urls = f"{self.ldaps_uri}/ {self.ldap_uri}/ {self.ldapi_uri}/"
        with (self.root / "slapd.log").open("ab") as log:
            self.process = subprocess.Popen(
                [slapd, "-f", str(self.root / "slapd.conf"), "-h", urls, "-d", "0"],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"slapd exited: {(self.root / 'slapd.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.ldaps_port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("slapd did not start listening within 20 s")

    def ldif(self, text: str, *, modify: bool = False) -> None:
        """Apply LDIF as the administrator (``ldapadd``, or ``ldapmodify`` with ``modify``)."""
        tool = find("ldapmodify" if modify else "ldapadd")
        assert tool, "ldap-utils is not installed (scripts/system-deps.sh installs it)"
        done = subprocess.run(
            [tool, "-x", "-H", self.ldapi_uri, "-D", ADMIN_DN, "-y", str(self._admin_file())],
            input=text.encode(),
            capture_output=True,
            timeout=20,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()

    def _admin_file(self) -> Path:
        path = self.root / "admin-password"
        if not path.exists():
            # ldapadd -y reads the whole file: no trailing newline.
            path.write_text(self.admin_password)
            path.chmod(0o600)
        return path

    def add_user(self, uid: str, upn: str = "") -> str:
        """Add a user (with a userPrincipalName if ``upn``) with a fresh password; return the password."""
        password = secrets.token_urlsafe(12)
        self.passwords[uid] = password
        extra = f"objectClass: extensibleObject\nuserPrincipalName: {upn}\n" if upn else ""
        self.ldif(
            f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\n{extra}uid: {uid}\ncn: {uid}\nsn: {uid}\n"
            f"userPassword: {password}\n"
        )
        return password

    def add_group(self, cn: str, members: tuple[str, ...]) -> str:
        """Add a groupOfNames whose members are full DNs; return its DN."""
        dn = f"cn={cn},{GROUPS}"
        lines = "".join(f"member: {m}\n" for m in members)
        self.ldif(f"dn: {dn}\nobjectClass: groupOfNames\ncn: {cn}\n{lines}")
        return dn

    def set_members(self, group_dn: str, members: tuple[str, ...]) -> None:
        """Replace a group's members (groupOfNames needs at least one: use a placeholder DN if none)."""
        lines = "".join(f"member: {m}\n" for m in members)
        self.ldif(f"dn: {group_dn}\nchangetype: modify\nreplace: member\n{lines}", modify=True)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def user_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"
