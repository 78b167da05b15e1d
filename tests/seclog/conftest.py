"""Shared helpers for the security-log tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, Outcome, Request
from meterd.seclog import EventType, LogConfig, SecurityLog

#: Tests run unprivileged-style: no append-only attribute (it would block tmp cleanup).
TEST_CONFIG = LogConfig(append_only_attr=False)


def fill(log: SecurityLog, count: int, principal: str = "alice") -> list[int]:
    """Append ``count`` login failures and return their seqs."""
    return [
        log.append(
            EventType.LOGIN_FAILURE,
            principal=principal,
            outcome=Outcome.DENY,
            channel=Channel.SSH,
            source="192.0.2.7:50022",
            detail={"attempt": i},
        )
        for i in range(count)
    ]


def decision(
    principal: str = "auditor",
    permission: Permission = Permission.SECURITY_LOGS_ACCESS,
    outcome: Outcome = Outcome.ALLOW,
) -> Decision:
    """Return a decision as the permission core would."""
    return Decision(Request(principal, permission, "/logs/security", Channel.SSH, "192.0.2.9"), outcome)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "seclog"


@pytest.fixture
def initial_key(log_dir: Path) -> bytes:
    return SecurityLog.init(log_dir, TEST_CONFIG)


@pytest.fixture
def log(log_dir: Path, initial_key: bytes) -> Iterator[SecurityLog]:
    opened = SecurityLog.open(log_dir, TEST_CONFIG)
    yield opened
    opened.close()
