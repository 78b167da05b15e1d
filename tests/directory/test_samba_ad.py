"""The Samba AD fixture works: LDAPS with the run's CA, UPN binds, nested groups in one in-chain search."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
import warnings
from pathlib import Path

import ldap3
import pytest
from ldap3.core.exceptions import LDAPBindError
from ldap3.utils.conv import escape_filter_chars

from tests.directory.samba_ad import FQDN, SambaAD, samba_ad

__all__ = ["samba_ad"]  # the fixture, imported for pytest

pytestmark = pytest.mark.slow

IN_CHAIN = "1.2.840.113556.1.4.1941"


def groups_in_chain(connection: ldap3.Connection, base_dn: str, user_dn: str) -> set[str]:
    connection.search(
        base_dn,
        f"(&(objectClass=group)(member:{IN_CHAIN}:={escape_filter_chars(user_dn)}))",
        attributes=["cn"],
    )
    return {str(entry.cn) for entry in connection.entries}


def test_ldaps_certificate_names_the_address_and_the_dc(samba_ad: SambaAD) -> None:
    context = ssl.create_default_context(cafile=str(samba_ad.ca_file))
    with (
        socket.create_connection((samba_ad.host, samba_ad.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=samba_ad.host) as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # A name the certificate does not cover fails the check.
    with (
        socket.create_connection((samba_ad.host, samba_ad.port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"),
    ):
        context.wrap_socket(raw, server_hostname="localhost")
    assert samba_ad.uri == f"ldaps://{samba_ad.host}:636"
    assert FQDN == "dc1.utility.example"


def test_bind_by_upn_and_nested_groups_in_one_search(samba_ad: SambaAD) -> None:
    ulrich = samba_ad.users["ulrich"]
    connection = samba_ad.connect(ulrich.upn, ulrich.password)
    assert ulrich.upn == "ulrich.k@utility.example"
    connection.search(
        samba_ad.base_dn, "(userPrincipalName=ulrich.k@utility.example)", attributes=["sAMAccountName"]
    )
    assert [str(e.sAMAccountName) for e in connection.entries] == ["ulrich"]
    nina = samba_ad.users["nina"]
    assert groups_in_chain(connection, samba_ad.base_dn, nina.dn) == {
        "Field-Crew-North",
        "Field-Crews",
        "GridVis-Electrician",
    }
    assert groups_in_chain(connection, samba_ad.base_dn, ulrich.dn) == {"GridVis-Analyst"}
    connection.unbind()


def test_starttls_on_389_and_no_simple_bind_without_it(samba_ad: SambaAD) -> None:
    olivia = samba_ad.users["olivia"]
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(samba_ad.ca_file))
    server = ldap3.Server(samba_ad.host, port=389, tls=tls, connect_timeout=5)
    assert samba_ad.starttls_uri == f"ldap://{samba_ad.host}:389"
    plain = ldap3.Connection(server, user=olivia.upn, password=olivia.password, receive_timeout=5)
    try:
        assert not plain.bind()  # ldap server require strong auth: no simple bind in clear text
        assert plain.result["description"] == "strongerAuthRequired"
    finally:
        plain.unbind()
    secured = ldap3.Connection(server, user=olivia.upn, password=olivia.password, receive_timeout=5)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "ssl.match_hostname", DeprecationWarning)
            assert secured.start_tls()
        assert secured.bind()
    finally:
        secured.unbind()


def test_service_account_and_refusals(samba_ad: SambaAD) -> None:
    password = samba_ad.service_password_file.read_text().strip()
    assert samba_ad.service_password_file.stat().st_mode & 0o777 == 0o600
    samba_ad.connect(samba_ad.service_dn, password).unbind()
    olivia = samba_ad.users["olivia"]
    with pytest.raises(LDAPBindError):
        samba_ad.connect(olivia.upn, olivia.password + "x")
    dora = samba_ad.users["dora"]  # disabled
    with pytest.raises(LDAPBindError):
        samba_ad.connect(dora.upn, dora.password)


def test_membership_changes_are_seen_at_the_next_search(samba_ad: SambaAD) -> None:
    user = samba_ad.add_user("fixture-probe", upn="probe@meter.test", groups=["GridVis-Observer"])
    try:
        samba_ad.add_group("Probe-Team", member_of=["GridVis-Editor"])
        samba_ad.add_to_group("Probe-Team", "fixture-probe")
        connection = samba_ad.connect(user.upn, user.password)
        assert groups_in_chain(connection, samba_ad.base_dn, user.dn) == {
            "GridVis-Observer",
            "Probe-Team",
            "GridVis-Editor",
        }
        samba_ad.remove_from_group("Probe-Team", "fixture-probe")
        assert groups_in_chain(connection, samba_ad.base_dn, user.dn) == {"GridVis-Observer"}
        connection.unbind()
    finally:
        samba_ad.delete("fixture-probe")
        samba_ad.delete("Probe-Team")


def listening_addresses(pid: int) -> set[str]:
    """Local addresses of the TCP sockets process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                address, port = fields[1].split(":")
                raw = bytes.fromhex(address)
                # /proc shows IPv4 addresses in host (little-endian) byte order.
                host = str(ipaddress.ip_address(raw[::-1] if len(raw) == 4 else raw))
                found.add(f"{host}:{int(port, 16)}")
    return found


def test_listens_on_its_loopback_address_only(samba_ad: SambaAD) -> None:
    assert samba_ad.process is not None
    assert listening_addresses(samba_ad.process.pid) == {
        f"{samba_ad.host}:{port}" for port in (389, 636, 3268, 3269)
    }
    print("samba AD timings (s):", {k: round(v, 1) for k, v in samba_ad.timings.items()})
