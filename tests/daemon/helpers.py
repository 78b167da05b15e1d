"""Building a guard over a real security log and a real policy, for daemon-side tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meterd.guard import Guard, Session
from meterd.policy.compile import compile_policy
from meterd.policy.dump import dump_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.seclog import SecurityLog

ADMIN_POLICY: dict[str, Any] = {
    "policy": {"name": "test", "version": 1},
    "users": {"admin": {"roles": ["rbacmnt"]}, "op": {"roles": ["operator"]}, "aud": {"roles": ["secaud"]}},
    "constraints": {"separation_of_duties": [["user_management", "security_logs_access"]]},
}


def make_guard(tmp_path: Path, doc: dict[str, Any] | None = None) -> tuple[Guard, SecurityLog]:
    log_dir = tmp_path / "security-log"
    SecurityLog.init(log_dir)
    seclog = SecurityLog.open(log_dir)
    return Guard(compile_policy(load_policy(doc or ADMIN_POLICY)), seclog), seclog


async def session(guard: Guard, user: str) -> Session:
    opened = await guard.open_session(user, Channel.SSH, "127.0.0.1", (Permission.TERMINAL_ACCESS,))
    assert isinstance(opened, Session)
    return opened


def policy_text(op_role: str) -> str:
    """A complete policy text whose only difference is the operator user's role."""
    doc = {**ADMIN_POLICY, "users": {**ADMIN_POLICY["users"], "op": {"roles": [op_role]}}}
    return dump_policy(load_policy(doc))


POLICY_A = policy_text("operator")
POLICY_B = policy_text("engineer")
