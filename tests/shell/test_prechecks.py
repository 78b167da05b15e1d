"""What the shell settles before asking the guard: pre-checks, approvals, and what help lists."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from meterd.credentials import hash_secret
from meterd.guard import Guard
from meterd.meter.firmware import build_image
from meterd.meter.simulation import SimulatedMeter
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.runtime import Runtime
from meterd.seclog import EventType, LogConfig, SecurityLog, read_records
from meterd.shell import EXIT_DENIED, EXIT_OK, EXIT_USAGE, MeterShell
from tests.certs import make_certificate, pem_of
from tests.shell.test_shell import PASSWORD, ScriptedTerminal, login

Body = Callable[[Runtime, Path], Awaitable[None]]
# A pre-check that let a dual-control command through would wait this long for an approver.
NO_WAIT = 5.0


def _policy_doc(dual_control: list[str]) -> dict[str, Any]:
    hashed = hash_secret(PASSWORD, log2_n=14)
    users = {
        "inst1": ["installer"],
        "inst2": ["installer"],
        "eng": ["engineer"],
        "bob": ["viewer"],
        "sec": ["secadm"],
        "root": ["rbacmnt"],
    }
    return {
        "users": {name: {"roles": roles, "password": hashed} for name, roles in users.items()},
        "constraints": {"dual_control": dual_control},
        "settings": {"dual_control_timeout": 30},
    }


def run_shell(
    tmp_path: Path, body: Body, dual_control: tuple[str, ...] = ("master_reset", "firmware_management")
) -> None:
    """Run ``body`` with a fresh runtime (log, meter, guard) in ``tmp_path``."""

    async def main() -> None:
        config = LogConfig(append_only_attr=False)
        SecurityLog.init(tmp_path / "log", config)
        seclog = SecurityLog.open(tmp_path / "log", config)
        try:
            guard = Guard(compile_policy(load_policy(_policy_doc(list(dual_control)))), seclog)
            await body(Runtime(guard, SimulatedMeter(tmp_path), tmp_path), tmp_path)
        finally:
            seclog.close()

    asyncio.run(main())


async def execute(runtime: Runtime, user: str, line: str, answers: tuple[str, ...] = ()) -> tuple[int, str]:
    term = ScriptedTerminal(answers)
    shell = MeterShell(runtime, await login(runtime, user), term)
    status = await asyncio.wait_for(shell.execute(line), NO_WAIT)
    return status, term.output


def record_count(root: Path) -> int:
    return len(read_records(root / "log"))


# -- approve / reject ---------------------------------------------------------


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_a_missing_request_is_named_not_denied(tmp_path: Path, verb: str) -> None:
    async def body(runtime: Runtime, root: Path) -> None:
        for user in ("inst2", "bob"):
            session_opened = await login(runtime, user)
            before = record_count(root)
            term = ScriptedTerminal()
            status = await MeterShell(runtime, session_opened, term).execute(f"{verb} 999")
            assert term.output == "no pending request 999\n"
            assert status == EXIT_USAGE
            after = read_records(root / "log")[before:]
            # Only the shell's own allow of terminal_access: no user_management (or any) denial.
            assert [(r.event, r.permission) for r in after] == [
                (EventType.ACCESS_DECISION, "terminal_access")
            ]

    run_shell(tmp_path, body)


def test_a_request_number_that_is_no_number_is_a_usage_error(tmp_path: Path) -> None:
    async def body(runtime: Runtime, root: Path) -> None:
        before = record_count(root)
        status, output = await execute(runtime, "inst2", "approve seven")
        assert status == EXIT_USAGE
        assert output == "error: 'seven' is not a request number\nusage: approve ID\n"
        assert record_count(root) == before + 1  # the login; the command asked the guard nothing

    run_shell(tmp_path, body)


def test_approvals_lists_only_what_the_caller_can_act_on(tmp_path: Path) -> None:
    async def body(runtime: Runtime, root: Path) -> None:
        requester = MeterShell(runtime, await login(runtime, "inst1"), ScriptedTerminal())
        waiting = asyncio.ensure_future(requester.execute("master-reset"))
        for _ in range(200):
            if runtime.guard.dual_control.pending():
                break
            await asyncio.sleep(0.01)
        [pending] = runtime.guard.dual_control.pending()
        _, shown = await execute(runtime, "inst2", "approvals")
        assert [row.split()[:3] for row in shown.splitlines()[1:]] == [
            [str(pending.id), "inst1", "master_reset"]
        ]
        for user in ("eng", "bob", "inst1"):  # no permission, or the requester's own request
            _, shown = await execute(runtime, user, "approvals")
            assert shown == "id  requester  permission  action\n", user
        assert await execute(runtime, "inst2", f"approve {pending.id}") == (
            EXIT_OK,
            f"request {pending.id} approved\n",
        )
        assert await asyncio.wait_for(waiting, NO_WAIT) == EXIT_OK

    run_shell(tmp_path, body)


APPROVER_COMMANDS = {"approvals", "approve ID", "reject ID"}


def listed(output: str) -> set[str]:
    return {line.split("  ")[0] for line in output.splitlines()[1:]}


@pytest.mark.parametrize(
    ("dual_control", "user", "shown"),
    [
        (("master_reset", "firmware_management"), "inst1", True),
        (("master_reset", "firmware_management"), "eng", False),
        (("master_reset", "firmware_management"), "bob", False),
        (("master_reset", "firmware_management"), "root", False),
        (("user_management",), "root", True),
        ((), "inst1", False),
    ],
)
def test_help_lists_approvals_only_for_holders_of_a_dual_control_permission(
    tmp_path: Path, dual_control: tuple[str, ...], user: str, shown: bool
) -> None:
    async def body(runtime: Runtime, root: Path) -> None:
        status, output = await execute(runtime, user, "help")
        assert status == EXIT_OK
        assert (listed(output) >= APPROVER_COMMANDS) is shown, output
        assert (APPROVER_COMMANDS & listed(output)) == (APPROVER_COMMANDS if shown else set())
        assert "whoami" in listed(output)

    run_shell(tmp_path, body, dual_control)


# -- pre-checks -----------------------------------------------------------------

GOOD_IMAGE = build_image("2.0.1", b"payload" * 64)


def _prepare(runtime: Runtime) -> str:
    """Files and state the cases refer to; return the installed certificate's fingerprint."""
    area = runtime.meter.file_area
    (area / "firmware" / "good.bin").write_bytes(GOOD_IMAGE)
    (area / "firmware" / "junk.bin").write_bytes(b"not an image " * 16)
    (area / "firmware" / "adir").mkdir()
    (area / "firmware" / "link.bin").symlink_to(area / "firmware" / "good.bin")
    (area / "firmware" / "twice.bin").write_bytes(GOOD_IMAGE)
    os.link(area / "firmware" / "twice.bin", area / "data" / "twice.bin")
    os.mkfifo(area / "firmware" / "fifo.bin")
    runtime.meter.install_firmware(GOOD_IMAGE, "installed.bin")
    pem = pem_of(make_certificate("scada-7"))
    (area / "certs" / "installed.pem").write_bytes(pem)
    (area / "certs" / "junk.pem").write_bytes(
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    (area / "certs" / "key.pem").write_bytes(
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    return runtime.meter.install_certificate(pem).fingerprint


REFUSED = [
    ("inst1", "firmware install nosuch.bin", EXIT_DENIED, "error: cannot open /firmware/nosuch.bin: No such"),
    ("inst1", "firmware install junk.bin", EXIT_DENIED, "error: not a firmware image: bad magic"),
    ("inst1", "firmware install adir", EXIT_DENIED, "error: /firmware/adir is not a regular file"),
    ("inst1", "firmware install link.bin", EXIT_DENIED, "error: /firmware/link.bin is a symbolic link"),
    ("inst1", "firmware install twice.bin", EXIT_DENIED, "error: /firmware/twice.bin has 2 links"),
    ("inst1", "firmware install fifo.bin", EXIT_DENIED, "error: /firmware/fifo.bin is not a regular file"),
    ("inst1", "firmware install installed.bin", EXIT_DENIED, "is already installed"),
    ("inst1", "firmware install ../etc/passwd", EXIT_USAGE, "give a file name in /firmware"),
    ("inst1", "firmware install Bad$Name", EXIT_DENIED, "bad firmware image name"),
    ("sec", "cert install nosuch.pem", EXIT_DENIED, "error: cannot open /certs/nosuch.pem"),
    ("sec", "cert install junk.pem", EXIT_DENIED, "error: "),
    ("sec", "cert install key.pem", EXIT_DENIED, "refusing a private key"),
    ("sec", "cert install installed.pem", EXIT_DENIED, "is already installed"),
    ("sec", "cert remove 0123456789abcdef", EXIT_DENIED, "no installed certificate matches"),
    ("sec", "cert remove 01234", EXIT_DENIED, "give at least 8 hex digits"),
    ("root", "user remove nosuch", EXIT_DENIED, "error: no user 'nosuch'"),
    ("root", "user roles nosuch viewer", EXIT_DENIED, "error: no user 'nosuch'"),
    ("root", "user roles bob nosuchrole", EXIT_DENIED, "error: no role 'nosuchrole'"),
    ("root", "user roles bob viewer,viewer", EXIT_DENIED, "error: a role is listed twice"),
    ("root", "user reset-password nosuch", EXIT_DENIED, "error: no user 'nosuch'"),
    ("root", "user add bob viewer", EXIT_DENIED, "error: 'bob' already exists"),
    ("root", "user add carol nosuchrole", EXIT_DENIED, "error: no role 'nosuchrole'"),
    ("root", "user add Carol/x viewer", EXIT_USAGE, "bad user name"),
    ("root", "user add anonymous viewer", EXIT_USAGE, "bad user name"),
    ("root", "user add carol viewer ssh-ed25519 notakey", EXIT_USAGE, "usage: user add"),
    ("eng", "test-mode maybe", EXIT_USAGE, "error: expected on or off\nusage: test-mode on|off"),
    ("eng", "time set yesterday", EXIT_USAGE, "expected ISO 8601 time or POSIX seconds"),
    ("eng", "time set 1800-01-01T00:00:00Z", EXIT_DENIED, "error: meter_time: "),
    ("eng", "comm set novalue", EXIT_USAGE, "expected key=value"),
    ("eng", "settings set =3", EXIT_USAGE, "expected key=value"),
    ("eng", "module set setpoint_9 enabled=on", EXIT_DENIED, "unknown ION module"),
    ("eng", "module set setpoint_1 enabled", EXIT_USAGE, "expected key=value"),
]


@pytest.mark.parametrize(("user", "line", "status", "message"), REFUSED)
def test_a_command_that_cannot_succeed_is_refused_before_the_guard_is_asked(
    tmp_path: Path, user: str, line: str, status: int, message: str
) -> None:
    async def body(runtime: Runtime, root: Path) -> None:
        _prepare(runtime)
        meter_before = (root / "meter" / "state.json").read_bytes()
        session_opened = await login(runtime, user)
        before = record_count(root)
        term = ScriptedTerminal(["Fresh-Password-9", "Fresh-Password-9"])
        got = await asyncio.wait_for(MeterShell(runtime, session_opened, term).execute(line), NO_WAIT)
        assert (got, message in term.output) == (status, True), term.output
        assert record_count(root) == before  # no decision, no dual-control request, no failed action
        assert not runtime.guard.dual_control.pending()
        assert term.prompts == []
        assert (root / "meter" / "state.json").read_bytes() == meter_before
        assert runtime.guard.compiled.policy.version == 1

    run_shell(tmp_path, body)


@pytest.mark.parametrize(
    ("line", "permission"),
    [
        ("firmware install nosuch.bin", "firmware_management"),
        ("cert remove 0123456789abcdef", "certificate_management"),
        ("user remove nosuch", "user_management"),
        ("user reset-password nosuch", "user_management"),
        ("test-mode maybe", "test_mode_toggle"),
        ("time set yesterday", "time_sync"),
    ],
)
def test_without_the_permission_the_pre_check_tells_nothing(
    tmp_path: Path, line: str, permission: str
) -> None:
    async def body(runtime: Runtime, root: Path) -> None:
        session_opened = await login(runtime, "bob")
        before = record_count(root)
        term = ScriptedTerminal()
        assert await MeterShell(runtime, session_opened, term).execute(line) == EXIT_DENIED
        assert term.output.startswith(f"denied: {permission} (no role of bob grants {permission})")
        refused = read_records(root / "log")[before:]
        assert [(r.event, r.permission) for r in refused] == [(EventType.PERMISSION_DENIED, permission)]

    run_shell(tmp_path, body)


def test_a_good_firmware_image_still_waits_for_its_second_person(tmp_path: Path) -> None:
    async def body(runtime: Runtime, root: Path) -> None:
        _prepare(runtime)
        term = ScriptedTerminal()
        requester = MeterShell(runtime, await login(runtime, "inst1"), term)
        waiting = asyncio.ensure_future(requester.execute("firmware install good.bin"))
        for _ in range(200):
            if runtime.guard.dual_control.pending():
                break
            await asyncio.sleep(0.01)
        [pending] = runtime.guard.dual_control.pending()
        assert (await execute(runtime, "inst2", f"approve {pending.id}"))[0] == EXIT_OK
        assert await asyncio.wait_for(waiting, NO_WAIT) == EXIT_OK, term.output
        assert "version: 2.0.1" in term.output
        assert runtime.meter.status().firmware_version == "2.0.1"

    run_shell(tmp_path, body)
