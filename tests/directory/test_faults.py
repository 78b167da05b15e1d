"""Misbehaving directory servers: every login ends within its budget and the event loop keeps ticking.

Each fault is a real listener on 127.0.0.1 (tests/directory/faults.py) or the
real slapd; the login goes through the guard (worker pool, deadline, record).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterd.directory.offline import CachedLogin
from meterd.guard import Password
from meterd.policy.request import Channel
from meterd.seclog import EventType
from tests.directory import faults
from tests.directory.helpers import directory_settings, ldap_settings, make_directory_guard, with_lag
from tests.directory.pki import RuntimeCA
from tests.directory.slapd import GROUPS, Slapd, user_dn

#: Login budget in these tests (directory_settings), and what the loop may lag at worst: a
#: loop blocked by the directory would lag by a whole operation timeout (1 s) or more; the
#: margin is for a machine shared with other work.
BUDGET = 2.0
MAX_LAG = 0.5


@pytest.fixture
def alice(slapd: Slapd) -> str:
    password = slapd.add_user("alice")
    slapd.add_group("Operators", (user_dn("alice"),))
    return password


def _fault_uri(kind: str, slapd: Slapd, tmp_path: Path, opened: list[faults.FaultServer]) -> tuple[str, bool]:
    """Start the fault server ``kind``; return its URI and whether it is used with StartTLS."""
    if kind == "silent":
        server = faults.silent()
        opened.append(server)
        return f"ldap://127.0.0.1:{server.port}", True
    if kind == "tls-stall":
        server = faults.tls_stall()
        opened.append(server)
        return f"ldaps://127.0.0.1:{server.port}", False
    if kind == "starttls-stall":
        server = faults.start_tls_stall()
        opened.append(server)
        return f"ldap://127.0.0.1:{server.port}", True
    if kind == "wrong-ca":
        cert, key = RuntimeCA.create(tmp_path / "other", "other CA").server(tmp_path / "other")
    elif kind == "expired":
        cert, key = slapd.ca.server(tmp_path / "expired", expired=True)
    elif kind == "wrong-hostname":
        cert, key = slapd.ca.server(tmp_path / "wrong-name", ("ldap.elsewhere.example",))
    else:
        raise AssertionError(kind)
    server = faults.tls_server(cert, key)
    opened.append(server)
    return f"ldaps://127.0.0.1:{server.port}", False


@pytest.fixture
def opened() -> Iterator[list[faults.FaultServer]]:
    servers: list[faults.FaultServer] = []
    yield servers
    for server in servers:
        server.close()


@pytest.mark.parametrize(
    ("kind", "step", "why"),
    [
        ("silent", "starttls", "timed out"),
        ("tls-stall", "tls", "timed out"),
        ("starttls-stall", "starttls", "timed out"),
        ("wrong-ca", "tls", "certificate"),
        ("expired", "tls", "expired"),
        ("wrong-hostname", "tls", "certificate"),
    ],
)
def test_a_faulty_server_ends_the_login_within_budget_naming_server_and_step(
    kind: str, step: str, why: str, slapd: Slapd, alice: str, tmp_path: Path, opened: list[faults.FaultServer]
) -> None:
    uri, start_tls = _fault_uri(kind, slapd, tmp_path, opened)
    settings = directory_settings(ldap_settings(slapd, (uri,), start_tls=start_tls))
    rig = make_directory_guard(tmp_path, settings)

    async def login() -> bool:
        return await rig.guard.authenticate(Channel.SSH, "127.0.0.1:5", "alice", Password(alice))

    ok, took, lag = asyncio.run(with_lag(login()))
    failure = [r for r in rig.records() if r.event is EventType.LOGIN_FAILURE][-1]
    assert ok is False
    assert took < BUDGET + 0.6, (took, failure.detail)
    assert lag < MAX_LAG, (lag, failure.detail)
    assert failure.detail["reason"] == "directory_unreachable"
    assert failure.detail["server"] == uri
    assert failure.detail["step"] == step, failure.detail
    assert why in str(failure.detail["error"])
    rig.gate.close()


def test_the_next_server_answers_when_the_first_cannot_be_reached(
    slapd: Slapd, alice: str, tmp_path: Path, opened: list[faults.FaultServer]
) -> None:
    dead = faults.silent()
    opened.append(dead)
    dead_uri = f"ldaps://127.0.0.1:{dead.port}"
    settings = directory_settings(ldap_settings(slapd, (dead_uri, slapd.ldaps_uri), operation_timeout=0.5))
    rig = make_directory_guard(tmp_path, settings)
    ok, took, lag = asyncio.run(
        with_lag(rig.guard.authenticate(Channel.SSH, "127.0.0.1:5", "alice", Password(alice)))
    )
    assert ok is True
    assert rig.gate.origin["alice"] == ("ldap", slapd.ldaps_uri)
    assert took < BUDGET
    assert lag < MAX_LAG
    rig.gate.close()


def test_a_server_killed_mid_login_ends_it_within_budget(
    slapd: Slapd, alice: str, tmp_path: Path, opened: list[faults.FaultServer]
) -> None:
    proxy = faults.killing_proxy(slapd.ldaps_port, slapd.kill)
    opened.append(proxy)
    uri = f"ldaps://127.0.0.1:{proxy.port}"
    rig = make_directory_guard(tmp_path, directory_settings(ldap_settings(slapd, (uri,))))
    ok, took, lag = asyncio.run(
        with_lag(rig.guard.authenticate(Channel.SSH, "127.0.0.1:5", "alice", Password(alice)))
    )
    assert ok is False
    assert took < BUDGET + 0.6
    assert lag < MAX_LAG
    failure = [r for r in rig.records() if r.event is EventType.LOGIN_FAILURE][-1]
    assert failure.detail["reason"] == "directory_unreachable"
    assert failure.detail["server"] == uri
    assert failure.detail["step"] != "connect"  # it died after the connection was made
    rig.gate.close()


def test_many_logins_against_a_stalled_directory_leave_the_loop_free(
    slapd: Slapd, tmp_path: Path, opened: list[faults.FaultServer]
) -> None:
    stall = faults.tls_stall()
    opened.append(stall)
    uri = f"ldaps://127.0.0.1:{stall.port}"
    rig = make_directory_guard(tmp_path, directory_settings(ldap_settings(slapd, (uri,)), workers=2))

    async def twenty() -> list[bool]:
        return list(
            await asyncio.gather(
                *(
                    rig.guard.authenticate(Channel.SSH, f"127.0.0.1:{i}", f"user{i}", Password("secret-pw"))
                    for i in range(20)
                )
            )
        )

    results, took, lag = asyncio.run(with_lag(twenty()))
    # Two workers, twenty logins: the ones queued behind the stall end at the login budget too.
    assert results == [False] * 20
    assert took < BUDGET + 1.0
    assert lag < MAX_LAG
    rig.gate.close()


def test_a_user_bind_the_server_will_not_perform_is_a_refusal_never_an_offline_login(
    slapd: Slapd, tmp_path: Path, opened: list[faults.FaultServer]
) -> None:
    cert, key = slapd.ca.server(tmp_path / "unwilling")
    server = faults.unwilling_user_bind(cert, key, user_dn("alice"))
    opened.append(server)
    uri = f"ldaps://127.0.0.1:{server.port}"
    rig = make_directory_guard(tmp_path, directory_settings(ldap_settings(slapd, (uri,))))
    assert rig.gate.offline is not None
    # alice logged in online earlier: her password is in the offline cache.
    rig.gate.offline.store(
        "alice",
        "alice-password",
        CachedLogin(frozenset({f"cn=Operators,{GROUPS}"}), frozenset(), None, "ldap", time.time()),
    )
    ok = asyncio.run(rig.guard.authenticate(Channel.SSH, "127.0.0.1:5", "alice", Password("alice-password")))
    assert ok is False
    failure = [r for r in rig.records() if r.event is EventType.LOGIN_FAILURE][-1]
    assert failure.detail["reason"] == "directory_refused"
    assert failure.detail["step"] == "user bind"
    assert not any(r.detail.get("offline_login") for r in rig.records())
    rig.gate.close()
