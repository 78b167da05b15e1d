"""When the Modbus/TCP Security context is checked and built: at start in a fresh interpreter, then at the first handshake."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import shutil
import socket
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.exceptions import ModbusException

from meterd.channels.modbus import ModbusListener, TlsConfig, server_tls
from meterd.channels.modbus.certificates import server_context
from meterd.errors import ChannelError
from meterd.guard.credential_checks import LOCAL_CHECKS, NETWORK_CHECKS
from meterd.seclog import EventType
from meterd.workers import worker_pool

from .conftest import Env, serving, tcp_client, tls_client

VOLTAGES = 22
SERVER_TLS = "meterd.channels.modbus.server_tls"


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


@pytest.fixture
def server_contexts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the server-side SSLContexts this process (not a child of it) creates."""
    made: list[int] = []
    me = os.getpid()
    new = ssl.SSLContext.__new__

    def counting(cls: type[ssl.SSLContext], protocol: int | None = None, *args: Any, **kwargs: Any) -> Any:
        if protocol == ssl.PROTOCOL_TLS_SERVER and os.getpid() == me:
            made.append(protocol)
        return new(cls, protocol, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "__new__", staticmethod(counting))
    return made


@pytest.fixture
def own_files(env: Env, tmp_path: Path) -> TlsConfig:
    """The meter's certificate, key and the CA, copied where a test may replace them."""
    directory = tmp_path / "tls"
    directory.mkdir()
    paths = [Path(shutil.copy(p, directory)) for p in (env.pki.server.cert, env.pki.server.key, env.pki.ca)]
    return dataclasses.replace(env.config().tls, cert=paths[0], key=paths[1], ca=paths[2])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def reads_over_tls(env: Env, listener: ModbusListener, who: str) -> bool:
    """True if a TLS client with ``who``'s certificate reads the voltages."""
    async with tls_client(env, listener, who) as client:
        if not client.connected:
            return False
        try:
            response = await client.read_holding_registers(VOLTAGES, count=10)
        except ModbusException:
            return False
        return not response.isError()


def wrong_key(env: Env, tls: TlsConfig, tmp_path: Path) -> TlsConfig:
    return dataclasses.replace(tls, key=env.pki.clients["viewer"].key)


def corrupt_ca(env: Env, tls: TlsConfig, tmp_path: Path) -> TlsConfig:
    ca = tmp_path / "corrupt-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    return dataclasses.replace(tls, ca=ca)


def missing_key(env: Env, tls: TlsConfig, tmp_path: Path) -> TlsConfig:
    return dataclasses.replace(tls, key=tmp_path / "absent.key")


@pytest.mark.parametrize("broken", [wrong_key, corrupt_ca, missing_key])
def test_bad_tls_files_stop_the_start_with_the_in_process_message_and_nothing_listens(
    env: Env,
    tmp_path: Path,
    server_contexts: list[int],
    monkeypatch: pytest.MonkeyPatch,
    broken: Callable[[Env, TlsConfig, Path], TlsConfig],
) -> None:
    tls = dataclasses.replace(broken(env, env.config().tls, tmp_path), port=free_port())
    config = env.config(tls=tls, port=free_port())

    async def start() -> str:
        listener = ModbusListener(config, env.runtime)
        with pytest.raises(ChannelError) as raised:
            await listener.start()
        assert listener.ports == {}
        assert not listening(config.port)
        assert not listening(tls.port)
        return str(raised.value)

    checked_in_child = asyncio.run(start())
    assert server_contexts == []  # the error came from the separate interpreter's check
    with monkeypatch.context() as m:
        m.setattr(sys, "executable", str(tmp_path / "no-such-python"))
        in_process = asyncio.run(start())
    assert checked_in_child == in_process
    assert checked_in_child.startswith("modbus: cannot load the TLS certificate, key or CA: ")
    if broken is missing_key:
        assert str(tmp_path / "absent.key") in checked_in_child
    else:
        with pytest.raises(ChannelError) as direct:
            server_context(tls)
        assert checked_in_child == str(direct.value)
    assert "\n" not in checked_in_child


def test_the_context_is_built_at_the_first_tls_handshake_then_kept(
    env: Env, server_contexts: list[int]
) -> None:
    async def scenario() -> None:
        async with serving(env) as listener:
            await asyncio.sleep(0.1)
            assert server_contexts == []  # started, listening, and no TLS context in this process
            assert await reads_over_tls(env, listener, "viewer")
            assert len(server_contexts) == 1
            assert await reads_over_tls(env, listener, "operator")
            assert len(server_contexts) == 1

    run(scenario())
    assert len(env.records(events=frozenset({EventType.LOGIN_SUCCESS}))) == 2


def test_tls_files_replaced_after_start_refuse_every_tls_client_until_a_restart(
    env: Env,
    own_files: TlsConfig,
    server_contexts: list[int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reads: list[int] = []
    digests = server_tls.file_digests

    def counted(tls: TlsConfig) -> tuple[bytes, ...]:
        reads.append(1)
        return digests(tls)

    monkeypatch.setattr(server_tls, "file_digests", counted)
    caplog.set_level(logging.ERROR, SERVER_TLS)

    async def scenario() -> None:
        async with serving(env, tls=own_files) as listener:
            # A renewed certificate and key, valid in themselves, installed without a restart.
            assert own_files.cert is not None
            assert own_files.key is not None
            shutil.copy(env.pki.clients["engineer"].cert, own_files.cert)
            shutil.copy(env.pki.clients["engineer"].key, own_files.key)
            started_reads = len(reads)
            assert not await reads_over_tls(env, listener, "viewer")
            first_reads = len(reads)
            assert first_reads == started_reads + 1
            assert not await reads_over_tls(env, listener, "operator")
            assert len(reads) == first_reads  # refused from what was kept: nothing read again
            async with tcp_client(listener) as plain:
                assert not (await plain.read_holding_registers(VOLTAGES, count=10)).isError()
            for _ in range(100):
                if listener.pools["tls"].handshakes.open == 0:  # type: ignore[union-attr]
                    break
                await asyncio.sleep(0.02)
            assert listener.pools["tls"].handshakes.open == 0  # type: ignore[union-attr]
            assert listener.pools["tls"].connections.open == 0

    run(scenario())
    assert server_contexts == []
    failures = env.records(events=frozenset({EventType.LOGIN_FAILURE}))
    assert [f.detail["reason"] for f in failures] == ["tls_context", "tls_context"]
    assert all("changed since meterd started" in str(f.detail["error"]) for f in failures)
    assert all("restart" in str(f.detail["error"]) for f in failures)
    assert not env.records(events=frozenset({EventType.LOGIN_SUCCESS}))
    errors = [r for r in caplog.records if r.name == SERVER_TLS and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "changed since meterd started" in errors[0].getMessage()


def stand_in_interpreter(behaviour: str, directory: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the start-time check run a stand-in that gives no answer; return where it notes its pid."""
    pid_file = directory / "check.pid"
    program = directory / "check"
    if behaviour == "dies":
        program.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexit 3\n")
    elif behaviour == "hangs":
        program.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 30\n")
    if behaviour != "cannot start":
        program.chmod(0o700)
    monkeypatch.setattr(sys, "executable", str(program))
    monkeypatch.setattr(server_tls, "CHECK_TIMEOUT", 0.5)
    return pid_file


@pytest.mark.parametrize("behaviour", ["cannot start", "dies", "hangs"])
def test_without_an_answer_from_the_check_the_context_is_built_at_start_and_tls_works(
    env: Env,
    tmp_path: Path,
    server_contexts: list[int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    behaviour: str,
) -> None:
    caplog.set_level(logging.WARNING, SERVER_TLS)
    pid_file = stand_in_interpreter(behaviour, tmp_path, monkeypatch)

    async def scenario() -> None:
        async with serving(env) as listener:
            assert len(server_contexts) == 1  # checked, and built, in this process at start
            if behaviour != "cannot start":  # reaped, even the one killed at the deadline
                assert not Path(f"/proc/{pid_file.read_text().strip()}").exists()
            assert await reads_over_tls(env, listener, "viewer")
            assert len(server_contexts) == 1

    run(scenario())
    (warning,) = [r for r in caplog.records if r.name == SERVER_TLS and r.levelno == logging.WARNING]
    assert "could not be checked in a separate process" in warning.getMessage()


@pytest.fixture
def openssl_in_worker_threads() -> Iterator[None]:
    """meterd's credential worker pools deriving scrypt keys (OpenSSL's KDF) without pause.

    What password logins on the channels that start before Modbus do while its
    start-time check runs.  The cost is below meterd's own so that OpenSSL's
    algorithm fetch, where it holds a lock, comes often: a forked child
    inherited that lock held about once in 40 checks here.
    """
    stop = threading.Event()

    def logins() -> None:
        while not stop.is_set():
            hashlib.scrypt(b"wrong guess", salt=b"0123456789abcdef", n=1 << 10, r=8, p=1, dklen=32)

    pools = [
        worker_pool(NETWORK_CHECKS, "meterd-check-network"),
        worker_pool(LOCAL_CHECKS, "meterd-check-local"),
    ]
    futures = [
        pool.submit(logins)
        for pool, size in zip(pools, (NETWORK_CHECKS, LOCAL_CHECKS), strict=True)
        for _ in range(size)
    ]
    try:
        yield
    finally:
        stop.set()
        for future in futures:
            future.result()
        for pool in pools:
            pool.shutdown()


def test_the_check_answers_while_worker_threads_use_openssl(
    own_files: TlsConfig, openssl_in_worker_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check inherits no lock: a fresh interpreter, not a fork of the daemon."""
    monkeypatch.setattr(server_tls, "CHECK_TIMEOUT", 5.0)  # a check answers in tens of milliseconds

    async def checks() -> None:
        for check in range(60):
            checked = await server_tls.ServerTls.checked(own_files)
            assert not checked.built, f"check {check}: no answer; the context was built in this process"

    asyncio.run(asyncio.wait_for(checks(), 120))


def _release_fifo_reader(fifo: Path, after: float, released: list[float]) -> threading.Thread:
    """After ``after`` s, open ``fifo`` for writing if someone is blocked opening it to read; note when."""

    def release() -> None:
        time.sleep(after)
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO unless a reader waits in open()
        except OSError:
            return
        released.append(time.monotonic())
        os.close(fd)  # the reader sees an empty file

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    return thread


def _drain(fifo: Path, blocked: threading.Thread) -> None:
    """Let whatever still waits on ``fifo`` go on."""
    deadline = time.monotonic() + 30
    while blocked.is_alive() and time.monotonic() < deadline:
        _release_fifo_reader(fifo, 0.05, []).join()
    assert not blocked.is_alive()


def test_a_fifo_in_place_of_the_ca_fails_the_start_instead_of_hanging_it(own_files: TlsConfig) -> None:
    assert own_files.ca is not None
    own_files.ca.unlink()
    os.mkfifo(own_files.ca)
    released: list[float] = []
    outcome: list[BaseException | None] = []

    def start() -> None:
        try:
            asyncio.run(server_tls.ServerTls.checked(own_files))
            outcome.append(None)
        except BaseException as e:  # recorded for the assertion below
            outcome.append(e)

    started = threading.Thread(target=start, daemon=True)
    started.start()
    try:
        _release_fifo_reader(own_files.ca, 3.0, released).join()
        started.join(1)
    finally:
        _drain(own_files.ca, started)
    assert not released, "the start was blocked in open() of the FIFO until this test wrote to it"
    assert outcome
    assert isinstance(outcome[0], ChannelError)
    assert str(outcome[0]).endswith(f"{own_files.ca}: not a regular file")


def test_a_fifo_swapped_in_after_start_never_blocks_the_event_loop(env: Env, own_files: TlsConfig) -> None:
    """Since the context is built at the first client, the event loop opens the files then."""
    assert own_files.ca is not None
    gaps: list[float] = []
    released: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with serving(env, tls=own_files) as listener:
            assert own_files.ca is not None
            own_files.ca.unlink()
            os.mkfifo(own_files.ca)
            stop = asyncio.Event()

            async def heartbeat() -> None:
                last = loop.time()
                while not stop.is_set():
                    await asyncio.sleep(0.05)
                    now = loop.time()
                    gaps.append(now - last)
                    last = now

            beat = asyncio.create_task(heartbeat())
            releaser = _release_fifo_reader(own_files.ca, 3.0, released)
            async with tls_client(env, listener, "viewer") as client:
                assert (
                    not client.connected
                    or (await client.read_holding_registers(VOLTAGES, count=10)).isError()
                )
            await asyncio.to_thread(releaser.join)
            async with tcp_client(listener) as plain:  # plain Modbus still answers
                assert not (await plain.read_holding_registers(VOLTAGES, count=10)).isError()
            stop.set()
            await beat

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert not released, "the event loop was blocked in open() of the FIFO until this test wrote to it"
    assert max(gaps) < 1.0, f"the event loop stalled {max(gaps):.1f} s"
    failures = env.records(events=frozenset({EventType.LOGIN_FAILURE}))
    assert [f.detail["reason"] for f in failures] == ["tls_context"]
    assert "changed since meterd started" in str(failures[0].detail["error"])
