"""The guard's stateful rules: per-session role limits and dual-control requests that are abandoned."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from meterd.guard import Guard, Session
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, DenyReason, Outcome
from meterd.seclog import EventType, Query, SecurityLog, read_records

DOC = {
    "users": {"admin": {"roles": ["rbacmnt"]}},
    "applications": {"scada": {"roles": ["viewer", "engineer"]}},
}


@contextlib.asynccontextmanager
async def _guard(tmp_path: Path, doc: dict[str, Any]) -> AsyncIterator[Guard]:
    """A guard over ``doc`` recording into a new log under ``tmp_path``, closed on exit."""
    SecurityLog.init(tmp_path / "log")
    with SecurityLog.open(tmp_path / "log") as seclog:
        yield Guard(compile_policy(load_policy(doc)), seclog)


def test_role_limit_narrows_and_never_widens(tmp_path: Path) -> None:
    async def main() -> None:
        async with _guard(tmp_path, DOC) as guard:
            opened = await guard.open_session(
                "scada", Channel.MODBUS, "127.0.0.1", (Permission.FS_READ_ONLY,)
            )
            assert isinstance(opened, Session)
            assert (await guard.authorize(opened, Permission.DSS_CONFIG, "/modbus/unit/1")).allowed
            opened.role_limit = ("viewer",)
            read = await guard.authorize(opened, Permission.FS_READ_ONLY, "/modbus/unit/1")
            assert read.allowed
            write = await guard.authorize(opened, Permission.DSS_CONFIG, "/modbus/unit/1")
            assert write.reason is DenyReason.ROLE_LIMIT
            assert "does not grant dss_config" in write.detail
            opened.role_limit = ("rbacmnt",)  # a role the application does not hold grants nothing
            denied = await guard.authorize(opened, Permission.USER_MANAGEMENT, "/meter/users")
            assert not denied.allowed
            opened.role_limit = ()  # the NULL role
            null = await guard.authorize(opened, Permission.FS_READ_ONLY, "/modbus/unit/1")
            assert null.reason is DenyReason.ROLE_LIMIT
            assert "NULL role" in null.detail

    asyncio.run(main())


def test_abandoned_dual_control_request_is_recorded(tmp_path: Path) -> None:
    doc = {
        "users": {"admin": {"roles": ["rbacmnt"]}, "inst": {"roles": ["installer"]}},
        "constraints": {"dual_control": ["master_reset"]},
    }

    async def main() -> None:
        async with _guard(tmp_path, doc) as guard:
            opened = await guard.open_session("inst", Channel.SSH, "127.0.0.1", (Permission.TERMINAL_ACCESS,))
            assert isinstance(opened, Session)
            waiting = asyncio.create_task(guard.authorize(opened, Permission.MASTER_RESET, "/meter"))
            await asyncio.sleep(0.2)
            assert guard.dual_control.pending()
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
            assert not guard.dual_control.pending()
        denied = read_records(tmp_path / "log", Query(events=frozenset({EventType.PERMISSION_DENIED})))
        assert [(r.principal, r.permission, r.outcome) for r in denied] == [
            ("inst", "master_reset", Outcome.DENY)
        ]
        assert denied[0].detail["why"] == "dual control: request abandoned"

    asyncio.run(main())


def test_scoped_principals_log_in_but_only_below_the_login_resource(tmp_path: Path) -> None:
    doc = {
        "scopes": {"paths": ["/files/data/feeder-a"]},
        "users": {
            "admin": {"roles": ["rbacmnt"]},
            "tech": {"roles": ["operator"], "scopes": ["/files/data/feeder-a", "/modbus"]},
            "unit": {"roles": ["viewer"], "scopes": ["/modbus"]},
        },
    }

    async def main() -> None:
        async with _guard(tmp_path, doc) as guard:
            shell = await guard.open_session("tech", Channel.SSH, "127.0.0.1", (Permission.TERMINAL_ACCESS,))
            assert isinstance(shell, Session)
            files = await guard.open_session(
                "tech", Channel.SFTP, "127.0.0.1", (Permission.FS_READ_ONLY,), "/files"
            )
            assert isinstance(files, Session)
            assert (
                await guard.authorize(files, Permission.FS_READ_ONLY, "/files/data/feeder-a/x.csv")
            ).allowed
            assert not (
                await guard.authorize(files, Permission.FS_READ_ONLY, "/files/firmware/x.bin")
            ).allowed
            refused = await guard.open_session(
                "unit", Channel.SFTP, "127.0.0.1", (Permission.FS_READ_ONLY,), "/files"
            )
            assert not isinstance(refused, Session)

    asyncio.run(main())


def test_role_limit_also_narrows_redecisions(tmp_path: Path) -> None:
    async def main() -> None:
        async with _guard(tmp_path, DOC) as guard:
            opened = await guard.open_session(
                "scada", Channel.MODBUS, "127.0.0.1", (Permission.FS_READ_ONLY,)
            )
            assert isinstance(opened, Session)
            allowed = await guard.authorize(opened, Permission.DSS_CONFIG, "/modbus/unit/1")
            assert allowed.allowed
            opened.role_limit = ("viewer",)
            again = await guard.reauthorize(opened, allowed)
            assert again.reason is DenyReason.ROLE_LIMIT

    asyncio.run(main())
