"""Password checks: a network flood of guesses never puts a local login behind it."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from pathlib import Path
from typing import Any

import pytest

import meterd.guard.login as guard_module
from meterd.credentials import hash_secret
from meterd.guard import Guard
from meterd.guard.credential_checks import CredentialChecks, address_of
from meterd.guard.credentials import Password, check_credential
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.request import Channel
from meterd.seclog import SecurityLog
from meterd.workers import WORKER_NICE

GUESSES = 40


def test_a_serial_login_does_not_wait_behind_a_flood_of_network_guesses(tmp_path: Path) -> None:
    secret = secrets.token_urlsafe(12)
    doc = {"users": {"tech": {"roles": ["operator"], "password": hash_secret(secret)}}}
    SecurityLog.init(tmp_path / "log")
    finished: list[str] = []

    async def attempt(guard: Guard, channel: Channel, source: str, name: str, password: str) -> bool:
        ok = await guard.authenticate(channel, source, name, Password(password))
        finished.append(channel.value)
        return ok

    async def main() -> None:
        with SecurityLog.open(tmp_path / "log") as seclog:
            guard = Guard(compile_policy(load_policy(doc)), seclog)
            flood = [
                asyncio.create_task(
                    attempt(guard, Channel.SSH, f"127.0.0.{2 + i % 4}:{40000 + i}", f"nobody{i}", "guess")
                )
                for i in range(GUESSES)
            ]
            await asyncio.sleep(0.05)  # every guess is queued or running
            assert await attempt(guard, Channel.SERIAL, "ttyS1", "tech", secret)
            assert not any(await asyncio.gather(*flood))

    asyncio.run(asyncio.wait_for(main(), 120))
    # The serial check ran beside the network ones, not after them: only the network
    # checks already running (two at a time) and at most the next pair finished first.
    assert finished.index("serial") <= 4, finished


def test_unknown_names_wrong_passwords_and_locked_accounts_take_the_same_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []

    def check(*args: Any) -> bool:
        threads.append(threading.current_thread().name)
        return check_credential(*args)

    monkeypatch.setattr(guard_module, "check_credential", check)
    secret = secrets.token_urlsafe(12)
    doc = {
        "settings": {"login_failure_threshold": 1},
        "users": {"tech": {"roles": ["operator"], "password": hash_secret(secret)}},
    }
    SecurityLog.init(tmp_path / "log")

    async def main() -> None:
        with SecurityLog.open(tmp_path / "log") as seclog:
            guard = Guard(compile_policy(load_policy(doc)), seclog)
            assert not await guard.authenticate(Channel.SSH, "127.0.0.2:1", "nobody", Password("x"))
            assert not await guard.authenticate(Channel.SSH, "127.0.0.2:2", "tech", Password("x"))
            # Locked now: the right password is refused, after the same scrypt work.
            assert not await guard.authenticate(Channel.SSH, "127.0.0.2:3", "tech", Password(secret))

    asyncio.run(main())
    assert len(threads) == 3
    assert all(name.startswith("meterd-check-network") for name in threads), threads


def test_the_address_of_a_source() -> None:
    assert address_of("127.0.0.2:40001") == "127.0.0.2"
    assert address_of("::1:22") == "::1"
    assert address_of("ttyS1") == "ttyS1"


@pytest.mark.parametrize("channel", [Channel.SSH, Channel.SERIAL])
def test_password_checks_run_below_the_event_loops_priority(channel: Channel) -> None:
    """scrypt in the workers must leave the CPU to the loop's thread (every channel's answers)."""
    checks = CredentialChecks()

    def own_nice() -> bool:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == WORKER_NICE

    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert loop_nice < WORKER_NICE
    assert asyncio.run(checks.run(channel, "127.0.0.1:40000", own_nice))
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_nice
