"""The RADIUS backend against a real FreeRADIUS on 127.0.0.1 (tests/directory/freeradius.py)."""

from __future__ import annotations

import secrets
import socket
import struct
import time
from pathlib import Path

import pytest

from meterd.directory.backend import DirectoryRefused, DirectoryUnreachable
from meterd.directory.radius import RadiusBackend, radius_settings
from meterd.directory.radius_codec import decode_reply, encode_request, hide_password
from tests.directory.freeradius import FreeRadius, RadiusUser, free_udp_port, freeradius, radius_server

__all__ = ["radius_server"]  # the fixture, imported for pytest

SLACK = 0.25


def test_accept_carries_groups_roles_and_scope(radius_server: FreeRadius) -> None:
    backend = RadiusBackend(radius_server.settings())
    engineer = radius_server.users["rad-engineer"]
    identity = backend.authenticate(engineer.name, engineer.password, time.monotonic() + 3)
    assert identity.name == "rad-engineer"
    assert identity.groups == {"grid-engineers"}
    assert identity.roles == {"engineer", "viewer"}
    assert identity.scope == "/modbus/unit/1"
    assert (identity.backend, identity.server) == ("radius", radius_server.uri)

    operator = radius_server.users["rad-operator"]
    identity = backend.authenticate(operator.name, operator.password, time.monotonic() + 3)
    assert identity.groups == {"grid-operators", "metering"}
    assert identity.roles == {"operator"}
    assert identity.scope is None


def test_groups_from_filter_id(radius_server: FreeRadius) -> None:
    operator = radius_server.users["rad-operator"]
    backend = RadiusBackend(radius_server.settings(group_attribute="Filter-Id"))
    assert backend.authenticate(operator.name, operator.password, time.monotonic() + 3).groups == {"ops"}


def test_a_user_without_attributes_has_no_groups_or_roles(radius_server: FreeRadius) -> None:
    user = radius_server.users["rad-nogroup"]
    identity = RadiusBackend(radius_server.settings()).authenticate(
        user.name, user.password, time.monotonic() + 3
    )
    assert (identity.groups, identity.roles, identity.scope) == (frozenset(), frozenset(), None)


@pytest.mark.parametrize("who", ["wrong-password", "unknown-user"])
def test_reject(radius_server: FreeRadius, who: str) -> None:
    user = radius_server.users["rad-operator"]
    name, password = (
        (user.name, user.password + "x") if who == "wrong-password" else ("nobody", user.password)
    )
    start = time.monotonic()
    with pytest.raises(DirectoryRefused, match="Access-Reject") as caught:
        RadiusBackend(radius_server.settings()).authenticate(name, password, start + 3)
    assert caught.value.server == radius_server.uri
    assert time.monotonic() - start < 1  # reject_delay = 0: an answer, not a timeout


def test_a_wrong_secret_is_no_answer_not_a_refusal(radius_server: FreeRadius, tmp_path: Path) -> None:
    # The server drops a request whose Message-Authenticator does not verify; it never says no.
    other = tmp_path / "other.secret"
    other.write_text("a-different-secret-of-enough-length\n")
    other.chmod(0o600)
    settings = radius_settings(radius_server.table(secret_file=str(other), timeout=0.2), tmp_path)
    user = radius_server.users["rad-operator"]
    start = time.monotonic()
    with pytest.raises(DirectoryUnreachable, match=r"no valid reply to 2 Access-Request\(s\)"):
        RadiusBackend(settings).authenticate(user.name, user.password, start + 3)
    assert time.monotonic() - start <= 0.4 + SLACK


def test_second_server_answers_when_the_first_is_silent(tmp_path: Path) -> None:
    user = RadiusUser("rad-both", classes=("grid-operators",), roles=("viewer",))
    with (
        freeradius(tmp_path / "one", [user]) as first,
        freeradius(tmp_path / "two", [user], secret=first.secret.decode()) as second,
    ):
        table = first.table(servers=[first.address, second.address], timeout=0.3, retries=1)
        backend = RadiusBackend(radius_settings(table, tmp_path))
        assert backend.authenticate(user.name, user.password, time.monotonic() + 3).server == first.uri
        first.pause()
        start = time.monotonic()
        identity = backend.authenticate(user.name, user.password, start + 3)
        elapsed = time.monotonic() - start
    assert identity.server == second.uri
    assert identity.roles == {"viewer"}
    assert 0.6 <= elapsed <= 0.6 + SLACK + 0.3


def test_a_paused_server_cannot_hold_a_login_past_its_deadline(radius_server: FreeRadius) -> None:
    user = radius_server.users["rad-operator"]
    backend = RadiusBackend(radius_server.settings(timeout=10, retries=5))
    radius_server.pause()
    try:
        start = time.monotonic()
        with pytest.raises(DirectoryUnreachable, match=radius_server.uri):
            backend.authenticate(user.name, user.password, start + 0.7)
        elapsed = time.monotonic() - start
    finally:
        radius_server.resume()
    assert 0.6 <= elapsed <= 0.7 + SLACK
    # Resumed, it answers again (the late request it queued is no longer waited for).
    assert backend.authenticate(user.name, user.password, time.monotonic() + 3).name == user.name


def test_the_server_drops_requests_without_message_authenticator(radius_server: FreeRadius) -> None:
    # The fixture's client entry says require_message_authenticator = yes: prove it.
    user = radius_server.users["rad-operator"]
    authenticator = secrets.token_bytes(16)
    attributes = [
        (1, user.name.encode()),
        (2, hide_password(user.password.encode(), radius_server.secret, authenticator)),
    ]
    body = b"".join(bytes((t, len(v) + 2)) + v for t, v in attributes)
    unsigned = struct.pack("!BBH", 1, 7, 20 + len(body)) + authenticator + body
    signed = encode_request(8, authenticator, radius_server.secret, attributes)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(unsigned, (radius_server.host, radius_server.port))
        with pytest.raises(TimeoutError):
            sock.recv(4096)
        sock.sendto(signed, (radius_server.host, radius_server.port))
        reply = decode_reply(sock.recv(4096), 8, authenticator, radius_server.secret)
    assert reply.code == 2


def test_the_fixture_tries_another_port_when_its_port_was_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        ports = [taken.getsockname()[1], free_udp_port()]
        monkeypatch.setattr("tests.directory.freeradius.free_udp_port", lambda: ports.pop(0))
        user = RadiusUser("rad-retry")
        with freeradius(tmp_path / "retry", [user]) as server:
            assert server.port != taken.getsockname()[1]
            assert RadiusBackend(server.settings()).authenticate(
                user.name, user.password, time.monotonic() + 3
            )
