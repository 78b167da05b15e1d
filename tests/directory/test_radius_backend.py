"""The RADIUS backend against hostile fake servers: real UDP on 127.0.0.1, every deadline kept."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest

from meterd.directory.backend import DirectoryRefused, DirectoryUnreachable
from meterd.directory.radius import RadiusBackend, RadiusServer, RadiusSettings
from tests.directory.fake_radius import fake_radius, request_message_authenticator_ok, reveal_password, vsa

SECRET = b"fake-radius-secret-0123456789"
VENDOR = 50316
ATTRIBUTES = [
    (25, b"grid-operators"),
    (25, b"metering"),
    (11, b"filter-group"),
    vsa(VENDOR, 1, b"operator"),
    vsa(VENDOR, 1, b"viewer"),
    vsa(VENDOR, 2, b"/modbus/unit/1"),
]
#: Slack for thread scheduling on a loaded machine, on top of a deadline.
SLACK = 0.25


def settings(*ports: int, timeout: float = 0.3, retries: int = 1, groups: str = "class") -> RadiusSettings:
    return RadiusSettings(
        servers=tuple(RadiusServer("127.0.0.1", p) for p in ports),
        secret_file=Path("/nonexistent"),
        secret=SECRET,
        timeout=timeout,
        retries=retries,
        group_attribute=groups,
    )


def silent_port() -> socket.socket:
    """A bound UDP socket that never answers (so no ICMP port unreachable either)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_accept_gives_groups_roles_scope_and_server() -> None:
    with fake_radius(SECRET, "accept", ATTRIBUTES) as server:
        identity = RadiusBackend(settings(server.port)).authenticate(
            "nemo", "arctangent", time.monotonic() + 2
        )
    assert identity.name == "nemo"
    assert identity.groups == {"grid-operators", "metering"}
    assert identity.roles == {"operator", "viewer"}
    assert identity.scope == "/modbus/unit/1"
    assert identity.backend == "radius"
    assert identity.server == f"radius://127.0.0.1:{server.port}"
    (request,) = server.requests
    assert request_message_authenticator_ok(request, SECRET)
    assert reveal_password(request, SECRET) == b"arctangent"
    assert b"meterd" in request  # NAS-Identifier


def test_groups_from_filter_id_when_configured() -> None:
    with fake_radius(SECRET, "accept", ATTRIBUTES) as server:
        identity = RadiusBackend(settings(server.port, groups="filter-id")).authenticate(
            "nemo", "pw", time.monotonic() + 2
        )
    assert identity.groups == {"filter-group"}


@pytest.mark.parametrize(
    ("mode", "message"), [("reject", "Access-Reject"), ("challenge", "Access-Challenge")]
)
def test_reject_and_challenge_are_refusals(mode: str, message: str) -> None:
    with fake_radius(SECRET, mode) as server, pytest.raises(DirectoryRefused, match=message) as caught:
        RadiusBackend(settings(server.port)).authenticate("nemo", "wrong", time.monotonic() + 2)
    assert caught.value.server == f"radius://127.0.0.1:{server.port}"


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("no-message-authenticator", "no Message-Authenticator"),
        ("wrong-message-authenticator", "wrong Message-Authenticator"),
        ("wrong-response-authenticator", "wrong Response Authenticator"),
        ("wrong-identifier", "is not the request's"),
        ("other-port", "not the server"),
        ("other-address", "came from 127.0.0.2"),
        ("silent", ""),
    ],
)
def test_hostile_replies_are_no_answer_and_the_deadline_holds(
    mode: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "meterd.directory.radius")
    with fake_radius(SECRET, mode, ATTRIBUTES) as server:
        # Generous timeouts: only the deadline can end this login in time.
        backend = RadiusBackend(settings(server.port, timeout=5, retries=3))
        start = time.monotonic()
        with pytest.raises(DirectoryUnreachable) as caught:
            backend.authenticate("nemo", "arctangent", start + 0.8)
        elapsed = time.monotonic() - start
    assert 0.7 <= elapsed <= 0.8 + SLACK
    text = str(caught.value)
    assert f"radius://127.0.0.1:{server.port}" in text
    assert caught.value.step == "access-request"
    if reason:
        assert reason in text
        assert any(reason in r.getMessage() and "discarded" in r.getMessage() for r in caplog.records)
    else:
        assert "no valid reply to 1 Access-Request(s)" in text


def test_a_flood_of_bad_replies_is_counted_not_logged_line_by_line(caplog: pytest.LogCaptureFixture) -> None:
    with fake_radius(SECRET, "flood") as server, pytest.raises(DirectoryUnreachable) as caught:
        RadiusBackend(settings(server.port, timeout=5)).authenticate("nemo", "pw", time.monotonic() + 0.5)
    assert "(10 reply(ies) discarded, last: no Message-Authenticator" in str(caught.value)
    assert len([r for r in caplog.records if "discarded" in r.getMessage()]) == 3


def test_valid_reply_after_hostile_ones_is_taken() -> None:
    with fake_radius(SECRET, "junk-then-accept", ATTRIBUTES) as server:
        identity = RadiusBackend(settings(server.port)).authenticate("nemo", "pw", time.monotonic() + 2)
    assert identity.roles == {"operator", "viewer"}


def test_retransmits_to_a_silent_server_then_uses_the_second() -> None:
    with silent_port() as silent, fake_radius(SECRET, "accept", ATTRIBUTES) as second:
        backend = RadiusBackend(settings(silent.getsockname()[1], second.port, timeout=0.2, retries=2))
        start = time.monotonic()
        identity = backend.authenticate("nemo", "pw", start + 3)
        elapsed = time.monotonic() - start
        silent.settimeout(0)
        sent_to_silent = []
        while True:
            try:
                sent_to_silent.append(silent.recv(4096))
            except BlockingIOError:
                break
    assert identity.server == f"radius://127.0.0.1:{second.port}"
    assert len(sent_to_silent) == 3  # the first send and two retransmissions
    assert len(set(sent_to_silent)) == 1  # a retransmission is the same packet
    assert 0.6 <= elapsed <= 0.6 + SLACK + 0.3


def test_a_short_deadline_still_leaves_the_second_server_its_share() -> None:
    with silent_port() as silent, fake_radius(SECRET, "accept") as second:
        backend = RadiusBackend(settings(silent.getsockname()[1], second.port, timeout=10, retries=0))
        identity = backend.authenticate("nemo", "pw", time.monotonic() + 1.0)
    assert identity.server.endswith(f":{second.port}")


def test_both_silent_names_both_servers() -> None:
    with silent_port() as one, silent_port() as two:
        ports = one.getsockname()[1], two.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(DirectoryUnreachable) as caught:
            RadiusBackend(settings(*ports, timeout=0.2)).authenticate("nemo", "pw", start + 5)
        elapsed = time.monotonic() - start
    for port in ports:
        assert f"radius://127.0.0.1:{port}: no valid reply to 2 Access-Request(s)" in str(caught.value)
    assert 0.8 <= elapsed <= 0.8 + SLACK


def test_a_past_deadline_sends_nothing() -> None:
    with (
        fake_radius(SECRET, "accept") as server,
        pytest.raises(DirectoryUnreachable, match="no server tried"),
    ):
        RadiusBackend(settings(server.port)).authenticate("nemo", "pw", time.monotonic() - 1)
    assert server.requests == []


@pytest.mark.parametrize(
    ("user", "password"), [("", "pw"), ("nemo", ""), ("nemo", "x" * 129), ("n" * 254, "pw")]
)
def test_unsendable_name_or_password_is_refused_without_asking(user: str, password: str) -> None:
    with fake_radius(SECRET, "accept") as server, pytest.raises(DirectoryRefused, match="cannot be sent"):
        RadiusBackend(settings(server.port)).authenticate(user, password, time.monotonic() + 2)
    assert server.requests == []


@pytest.mark.parametrize(
    ("scopes", "message"),
    [([b"/a", b"/b"], "2 different scopes"), ([b"\xff"], "not UTF-8")],
)
def test_an_unclear_scope_refuses(scopes: list[bytes], message: str) -> None:
    attributes = [vsa(VENDOR, 1, b"operator"), *(vsa(VENDOR, 2, s) for s in scopes)]
    with fake_radius(SECRET, "accept", attributes) as server, pytest.raises(DirectoryRefused, match=message):
        RadiusBackend(settings(server.port)).authenticate("nemo", "pw", time.monotonic() + 2)


def test_a_role_that_is_not_utf8_is_dropped() -> None:
    attributes = [vsa(VENDOR, 1, b"\xff"), vsa(VENDOR, 1, b"viewer")]
    with fake_radius(SECRET, "accept", attributes) as server:
        identity = RadiusBackend(settings(server.port)).authenticate("nemo", "pw", time.monotonic() + 2)
    assert identity.roles == {"viewer"}
    assert identity.scope is None
