"""When the Modbus/TCP Security context is checked and built: at start in a child, then at the first handshake."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import ssl
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
from meterd.seclog import EventType

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
    assert server_contexts == []  # the error came from the child's check
    with monkeypatch.context() as m:
        m.setattr(os, "fork", fork_refused)
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


def fork_refused() -> int:
    raise OSError(11, "Resource temporarily unavailable")


def record_forks(forked: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Have ``os.fork`` append each child's pid to ``forked`` (in the parent)."""
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)


@contextlib.contextmanager
def child_that(behaviour: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Make the start-time check's child fail to answer; yields the pids it forked."""
    forked: list[int] = []
    if behaviour == "cannot fork":
        monkeypatch.setattr(os, "fork", fork_refused)
        yield forked
        return
    parent = os.getpid()
    record_forks(forked, monkeypatch)

    def check(tls: TlsConfig) -> ssl.SSLContext:
        if os.getpid() != parent:
            if behaviour == "dies":
                os._exit(3)
            time.sleep(30)  # hangs: killed at the check's deadline
        return server_context(tls)

    monkeypatch.setattr(server_tls, "server_context", check)
    monkeypatch.setattr(server_tls, "CHECK_TIMEOUT", 0.5)
    yield forked


@pytest.mark.parametrize("behaviour", ["cannot fork", "dies", "hangs"])
def test_without_an_answer_from_the_child_the_context_is_built_at_start_and_tls_works(
    env: Env,
    server_contexts: list[int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    behaviour: str,
) -> None:
    caplog.set_level(logging.WARNING, SERVER_TLS)

    async def scenario() -> None:
        with child_that(behaviour, monkeypatch) as forked:
            async with serving(env) as listener:
                assert len(server_contexts) == 1  # checked, and built, in this process at start
                for pid in forked:  # reaped, even the one killed at the deadline
                    assert not Path(f"/proc/{pid}").exists()
                assert await reads_over_tls(env, listener, "viewer")
                assert len(server_contexts) == 1
            assert len(forked) == (0 if behaviour == "cannot fork" else 1)

    run(scenario())
    (warning,) = [r for r in caplog.records if r.name == SERVER_TLS and r.levelno == logging.WARNING]
    assert "not checked in a child process" in warning.getMessage()


def test_a_signal_sent_to_the_checking_child_never_reaches_the_daemon(
    own_files: TlsConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child shares the daemon's signal wake-up fd; it must not pass a signal on through it."""
    parent = os.getpid()
    forked: list[int] = []
    record_forks(forked, monkeypatch)

    def slow_check(tls: TlsConfig) -> ssl.SSLContext:
        if os.getpid() != parent:
            time.sleep(1.0)  # the signal arrives meanwhile (sleep resumes after the handler)
        return server_context(tls)

    def signal_the_child() -> None:
        deadline = time.monotonic() + 5
        while not forked and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(forked[0], signal.SIGUSR1)

    monkeypatch.setattr(server_tls, "server_context", slow_check)

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        received: list[str] = []
        loop.add_signal_handler(signal.SIGUSR1, received.append, "daemon")
        try:
            sender = threading.Thread(target=signal_the_child)
            sender.start()
            checked = server_tls.ServerTls(own_files)
            sender.join()
            await asyncio.sleep(0.3)  # a wake-up byte from the child would be handled by now
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)
        assert not checked.built
        return received

    assert asyncio.run(scenario()) == []
    assert len(forked) == 1
