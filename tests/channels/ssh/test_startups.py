"""Connections in their start-up (accepted, no session yet): capped in total and per address, bounded in time.

The flood clients are raw TCP sockets bound to other loopback addresses (127.0.0.2, 127.0.0.3),
so that the OpenSSH client on 127.0.0.1 is a different source.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import asyncssh
import pytest

from meterd.channels.ssh import SshConfig, SshListener
from meterd.metrics import MeterdMetrics
from meterd.seclog import EventType, Record
from tests.channels.ssh.harness import CLIENT_TIMEOUT, Server, build, have_clients

#: How long a test waits for the server to act on what a client did.
DEADLINE = 10.0


@contextlib.contextmanager
def listening(server: Server, **settings: int) -> Iterator[SshListener]:
    """A second listener on the module server's runtime with these ``[ssh]`` settings."""
    assert server.runtime is not None
    config = SshConfig(port=0, host_key_dir=server.root / "state" / "ssh", **settings)  # type: ignore[arg-type]
    listener = SshListener(config, server.runtime)
    server.call(listener.start())
    try:
        yield listener
    finally:
        server.call(listener.stop())


@contextlib.contextmanager
def flood(port: int, source: str, count: int) -> Iterator[list[socket.socket]]:
    """``count`` TCP connections to the listener from ``source``, which send nothing; closed on exit."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.settimeout(DEADLINE)
            sock.bind((source, 0))
            sock.connect(("127.0.0.1", port))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def held(sockets: list[socket.socket]) -> int:
    """How many of ``sockets`` the server kept: it sent them its version; the others were closed at once."""
    kept = 0
    for sock in sockets:
        try:
            data = sock.recv(256)
        except ConnectionResetError:
            data = b""
        assert data == b"" or data.startswith(b"SSH-2.0-"), data
        kept += data != b""
    return kept


def key_login(
    server: Server, port: int, user: str = "viewer1", *extra: str
) -> subprocess.CompletedProcess[str]:
    args = [*server.ssh_key_args(user)[:-1], str(port), *extra, f"{user}@127.0.0.1", "whoami"]
    return subprocess.run(args, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False)


@contextlib.contextmanager
def held_open(
    server: Server, port: int, *, session: bool = False, extra: Sequence[str] = ()
) -> Iterator[subprocess.Popen[str]]:
    """``operator1`` logged in with ``ssh -N`` (or a shell, with ``session``), until the block ends."""
    # LocalCommand runs once the client has authenticated: its line says the login is done.
    args = [*server.ssh_key_args("operator1")[:-1], str(port), *extra, "-o", "PermitLocalCommand=yes"]
    args += ["-o", "LocalCommand=echo authenticated", *([] if session else ["-N"]), "operator1@127.0.0.1"]
    with subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as client:
        try:
            assert client.stdout is not None
            assert client.stdout.readline() == "authenticated\n"
            yield client
        finally:
            client.kill()
            client.wait(DEADLINE)


def refusals(records: list[Record]) -> list[Record]:
    return [r for r in records if r.detail.get("reason") == "too_many_startups"]


def test_a_flood_from_one_address_is_capped_and_keeps_no_key_login_out(server: Server) -> None:
    with (
        listening(server, max_startups=10, max_startups_per_source=3) as listener,
        flood(listener.port, "127.0.0.2", 40) as sockets,
    ):
        assert held(sockets) == 3
        result = key_login(server, listener.port)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("user: viewer1\n")


def crowded_out(records: list[Record]) -> list[Record]:
    return [r for r in records if r.detail.get("reason") == "startup_crowded_out"]


def test_a_full_listener_makes_room_for_a_login_from_another_address(server: Server) -> None:
    with listening(server, max_startups=4, max_startups_per_source=3) as listener:
        mark = server.mark()
        with flood(listener.port, "127.0.0.2", 3) as first, flood(listener.port, "127.0.0.3", 3) as second:
            # .2 holds 3, then each of .3's beyond the fourth slot pushes out the busiest
            # source's oldest: .2's twice.  The login from .1 pushes out one of .3's.
            result = key_login(server, listener.port)
            assert result.returncode == 0, result.stderr
            assert result.stdout.startswith("user: viewer1\n")
            records = server.until(mark, lambda rs: len(crowded_out(rs)) >= 3)
            assert listener.startups.open <= 4
            assert len(first) + len(second) == 6
        assert sorted(r.source.rpartition(":")[0] for r in crowded_out(records)) == [
            "127.0.0.2",
            "127.0.0.2",
            "127.0.0.3",
        ]
        assert all(
            r.event is EventType.LOGIN_FAILURE and r.principal == "anonymous" for r in crowded_out(records)
        )


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, MeterdMetrics]]:
    if not have_clients():
        pytest.skip("OpenSSH clients (ssh, sftp, ssh-keygen) and sshpass are needed")
    root: Path = tmp_path_factory.mktemp("ssh-budget")
    running = build(root)
    running.unauthenticated_records = (3, 5)
    running.observer = metrics = MeterdMetrics()
    running.start()
    yield running, metrics
    running.stop()


def test_a_flood_writes_only_its_budget_of_records_and_is_counted(
    budgeted: tuple[Server, MeterdMetrics],
) -> None:
    server, metrics = budgeted
    with listening(server, max_startups=10, max_startups_per_source=2) as listener:
        mark = server.mark()
        with flood(listener.port, "127.0.0.2", 30) as sockets:
            assert held(sockets) == 2
        deadline = time.monotonic() + DEADLINE
        while server.guard.refusals_to_summarise < 25 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(refusals(server.since(mark))) == 3  # the address's budget of records
        assert metrics.registry.get_sample_value("meterd_connections_refused_total", {"channel": "ssh"}) == 28
        server.call(server.guard.sweep(final=True))
        summaries = [r for r in refusals(server.since(mark)) if "summarised" in r.detail]
        assert [(r.source, r.detail["summarised"]) for r in summaries] == [("127.0.0.2", 25)]


def test_an_authenticated_connection_without_a_session_is_closed_and_recorded(server: Server) -> None:
    with listening(server, login_grace_time=10, no_session_timeout=1) as listener:
        mark = server.mark()
        args = [*server.ssh_key_args("operator1")[:-1], str(listener.port), "-N", "operator1@127.0.0.1"]
        client = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        start = time.monotonic()
        try:
            _, stderr = client.communicate(timeout=DEADLINE)
        finally:
            client.kill()
            client.wait(DEADLINE)
        assert 0.8 < time.monotonic() - start < DEADLINE
        assert client.returncode == 255
        assert "no session" in stderr
        records = server.until(mark, lambda rs: any(r.principal == "operator1" for r in rs))
        mine = [r for r in records if r.principal == "operator1"]
        # One record for the login: who authenticated, from where, and why nothing followed.
        assert [(r.event, r.detail.get("reason"), r.detail.get("ended")) for r in mine] == [
            (EventType.LOGIN_FAILURE, "no_session", "timeout")
        ]
        assert mine[0].source.startswith("127.0.0.1:")


def test_an_authenticated_connection_that_leaves_without_a_session_is_recorded(server: Server) -> None:
    with listening(server, no_session_timeout=30) as listener:
        mark = server.mark()
        with held_open(server, listener.port):
            pass  # authenticated; the client is killed without asking for a session
        records = server.until(mark, lambda rs: any(r.principal == "operator1" for r in rs))
        assert [
            (r.event, r.detail.get("reason"), r.detail.get("ended"))
            for r in records
            if r.principal == "operator1"
        ] == [(EventType.LOGIN_FAILURE, "no_session", "disconnected")]


def test_a_connection_whose_sessions_ended_is_closed_without_a_second_login_record(
    server: Server, tmp_path: Path
) -> None:
    # An OpenSSH control master keeps its connection for later sessions: once the last one has
    # ended, the connection has no session again and the same bound applies.  Its login is the
    # session's login_success; the close adds no login record.
    with listening(server, no_session_timeout=2) as listener:
        control = ["-o", f"ControlPath={tmp_path / 'cm'}"]
        mark = server.mark()
        with held_open(server, listener.port, extra=[*control, "-o", "ControlMaster=yes"]) as master:
            args = [*server.ssh_key_args("operator1")[:-1], str(listener.port), *control]
            args += ["-o", "ControlMaster=no", "operator1@127.0.0.1", "whoami"]
            shared = subprocess.run(args, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False)
            assert shared.returncode == 0, shared.stderr
            ended = time.monotonic()
            assert master.wait(DEADLINE) == 255
            assert 1.5 < time.monotonic() - ended < DEADLINE
        records = server.until(mark, lambda rs: any(r.event is EventType.LOGOUT_MANUAL for r in rs))
        logins = (EventType.LOGIN_SUCCESS, EventType.LOGIN_FAILURE, EventType.LOGOUT_MANUAL)
        assert [r.event for r in records if r.principal == "operator1" and r.event in logins] == [
            EventType.LOGIN_SUCCESS,
            EventType.LOGOUT_MANUAL,
        ]


def test_a_connection_holds_its_start_up_slot_until_it_opens_a_session(server: Server) -> None:
    # Authenticated connections without a session count with the unauthenticated ones: a
    # valid key cannot hold an unbounded number of connections either.
    with listening(server, max_startups=10, max_startups_per_source=2, no_session_timeout=30) as listener:
        with held_open(server, listener.port), held_open(server, listener.port):
            refused = key_login(server, listener.port)
            assert refused.returncode == 255
        deadline = time.monotonic() + DEADLINE
        while (result := key_login(server, listener.port)).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert result.returncode == 0, result.stderr


def test_an_authenticated_user_cannot_exceed_max_sessions(server: Server) -> None:
    with listening(server, max_sessions=1) as listener, held_open(server, listener.port, session=True):
        deadline = time.monotonic() + DEADLINE
        while not listener.sessions and time.monotonic() < deadline:
            time.sleep(0.02)
        second = key_login(server, listener.port, "viewer1")
        assert second.returncode != 0
        assert "too many sessions" in second.stderr


def test_sessions_asked_for_together_stay_within_max_sessions(server: Server) -> None:
    # Eight shell requests sent in one burst on one connection: each is decided while the
    # others' login records are still being written, so a check that counted only the
    # sessions already open would let all of them in.
    async def burst(port: int) -> list[bool]:
        async with asyncssh.connect(
            "127.0.0.1",
            port,
            username="operator1",
            client_keys=[str(server.keys["operator1"])],
            known_hosts=None,
        ) as conn:

            async def shell() -> bool:
                process = await conn.create_process(term_type=None)
                try:
                    await asyncio.wait_for(process.wait_closed(), 2)
                except TimeoutError:
                    return True  # still open: it got its session
                return False

            return list(await asyncio.gather(*(shell() for _ in range(8))))

    with listening(server, max_sessions=2) as listener:
        mark = server.mark()
        opened = asyncio.run(asyncio.wait_for(burst(listener.port), 30))
        assert sum(opened) == 2
        records = server.until(
            mark, lambda rs: sum(r.detail.get("reason") == "too_many_sessions" for r in rs) >= 6
        )
        assert sum(r.detail.get("reason") == "too_many_sessions" for r in records) == 6


def test_a_connection_ended_by_the_listeners_stop_has_its_record_when_stop_returns(server: Server) -> None:
    config = SshConfig(port=0, host_key_dir=server.root / "state" / "ssh", no_session_timeout=30)
    assert server.runtime is not None
    listener = SshListener(config, server.runtime)
    server.call(listener.start())
    mark = server.mark()
    try:
        with held_open(server, listener.port):

            async def stop_then_read() -> list[Record]:
                await listener.stop()
                return server.since(mark)  # nothing else ran on the loop in between

            records = server.call(stop_then_read())
    finally:
        server.call(listener.stop())
    assert [
        (r.detail.get("reason"), r.detail.get("ended")) for r in records if r.principal == "operator1"
    ] == [("no_session", "disconnected")]
