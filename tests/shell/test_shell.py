"""The meter shell on a scripted terminal: parsing, denials, help, policy edits, session end."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from meterd.credentials import hash_secret
from meterd.guard import Guard, Password, Pin, PublicKey, Session
from meterd.meter.simulation import SimulatedMeter
from meterd.policy.compile import compile_policy
from meterd.policy.credentials import Credentials
from meterd.policy.loader import load_policy
from meterd.policy.model import Policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.runtime import Runtime
from meterd.seclog import EventType, LogConfig, SecurityLog, read_records
from meterd.shell import EXIT_DENIED, EXIT_OK, EXIT_USAGE, MeterShell
from meterd.shell.commands import COMMANDS
from tests.channels.ssh.harness import make_key

PASSWORD = "Horse-7-" + secrets.token_urlsafe(12)  # made per run: no credential in the tree


class ScriptedTerminal:
    """Feeds lines and collects output."""

    def __init__(self, lines: Sequence[str] = ()) -> None:
        self.lines = list(lines)
        self.output = ""
        self.prompts: list[tuple[str, bool]] = []

    async def write(self, text: str) -> None:
        self.output += text

    async def read_line(self, prompt: str, *, echo: bool = True) -> str | None:
        self.prompts.append((prompt, echo))
        return self.lines.pop(0) if self.lines else None


class StubPolicies:
    """The daemon's policy service, as a stub that accepts or refuses edits."""

    def __init__(self, status: int = 0) -> None:
        self.status = status
        self.edits: list[tuple[Policy, str]] = []
        self.credential_changes: list[str] = []

    async def run(
        self, guard: Guard, session: Session, argv: Sequence[str], payload: bytes
    ) -> tuple[int, str]:
        return 2, "not used"

    async def edit(self, guard: Guard, session: Session, policy: Policy, how: str) -> tuple[int, str]:
        self.edits.append((policy, how))
        if self.status == 0:
            guard.install_policy(compile_policy(policy))
            return 0, f"policy version {policy.version} in force\n"
        return self.status, "refused by the policy service\n"

    async def set_credentials(
        self, guard: Guard, session: Session, credentials: Credentials, how: str
    ) -> tuple[int, str]:
        self.credential_changes.append(how)
        if self.status == 0:
            guard.install_credentials(credentials)
            return 0, "credentials stored\n"
        return self.status, "refused by the credential store\n"


def _policy() -> Policy:
    hashed = hash_secret(PASSWORD, log2_n=14)
    return load_policy(
        {
            "users": {
                "alice": {"roles": ["engineer"], "password": hashed},
                "root": {"roles": ["rbacmnt"], "password": hashed},
                "bob": {"roles": ["viewer"], "password": hashed},
            },
        }
    )


def shell_test(policies: StubPolicies | None = None) -> Callable[[Callable[..., Awaitable[None]]], Any]:
    """Run an async test with a fresh runtime (log, meter, guard) in tmp_path."""

    def wrap(body: Callable[..., Awaitable[None]]) -> Any:
        def test(tmp_path: Path) -> None:
            async def main() -> None:
                config = LogConfig(append_only_attr=False)
                SecurityLog.init(tmp_path / "log", config)
                seclog = SecurityLog.open(tmp_path / "log", config)
                try:
                    guard = Guard(compile_policy(_policy()), seclog)
                    runtime = Runtime(guard, SimulatedMeter(tmp_path), tmp_path, policies)
                    await body(runtime, tmp_path)
                finally:
                    seclog.close()

            asyncio.run(main())

        test.__name__ = body.__name__
        return test

    return wrap


async def login(runtime: Runtime, user: str) -> Session:
    session = await runtime.guard.open_session(user, Channel.SSH, "test", (Permission.TERMINAL_ACCESS,))
    assert isinstance(session, Session)
    return session


@shell_test()
async def test_parsing_and_usage(runtime: Runtime, tmp_path: Path) -> None:
    term = ScriptedTerminal()
    shell = MeterShell(runtime, await login(runtime, "alice"), term)
    assert await shell.execute("") == EXIT_OK
    assert await shell.execute("   # a comment") == EXIT_OK
    assert await shell.execute("show 'readings") == EXIT_USAGE
    assert await shell.execute("shwo readings") == EXIT_USAGE
    assert 'did you mean "show"?' in term.output
    assert await shell.execute("show nothing") == EXIT_USAGE
    assert "one of: show comm" in term.output
    assert await shell.execute("demand reset now") == EXIT_USAGE
    assert "usage: demand reset" in term.output
    assert await shell.execute("x" * 5000) == EXIT_USAGE
    assert await shell.execute("comm set novalue") == EXIT_USAGE
    assert "expected key=value" in term.output


@shell_test()
async def test_denial_names_the_permission_and_the_reason(runtime: Runtime, tmp_path: Path) -> None:
    term = ScriptedTerminal()
    shell = MeterShell(runtime, await login(runtime, "bob"), term)
    assert await shell.execute("settings set demand_interval_min=30") == EXIT_DENIED
    assert term.output == "denied: dss_config (no role of bob grants dss_config)\n"
    records = read_records(tmp_path / "log")
    assert records[-1].event is EventType.PERMISSION_DENIED
    assert records[-1].permission == "dss_config"


@shell_test()
async def test_help_follows_the_policy(runtime: Runtime, tmp_path: Path) -> None:
    term = ScriptedTerminal()
    await MeterShell(runtime, await login(runtime, "alice"), term).execute("help")
    assert "settings set KEY=VALUE..." in term.output
    assert "user add" not in term.output
    term = ScriptedTerminal()
    await MeterShell(runtime, await login(runtime, "root"), term).execute("help")
    assert "user add" in term.output
    assert "settings set" not in term.output


@shell_test()
async def test_interactive_loop_until_exit(runtime: Runtime, tmp_path: Path) -> None:
    term = ScriptedTerminal(["whoami", "exit", "show time"])
    session = await login(runtime, "alice")
    await MeterShell(runtime, session, term).run()
    assert "user: alice" in term.output
    assert "meter_time" not in term.output
    assert [p for p, _ in term.prompts] == ["meter> ", "meter> "]


@shell_test()
async def test_a_closed_session_runs_nothing(runtime: Runtime, tmp_path: Path) -> None:
    session = await login(runtime, "alice")
    await runtime.guard.close_session(session, reason="test")
    term = ScriptedTerminal(["whoami"])
    shell = MeterShell(runtime, session, term)
    await shell.run()
    assert term.prompts == []
    assert await shell.execute("whoami") == EXIT_DENIED
    assert "session has ended" in term.output


@shell_test()
async def test_user_add_reads_the_password_without_echo(runtime: Runtime, tmp_path: Path) -> None:
    term = ScriptedTerminal(["Fresh-Password-9", "Fresh-Password-9"])
    shell = MeterShell(runtime, await login(runtime, "root"), term)
    assert await shell.execute("user add carol operator") == EXIT_OK, term.output
    assert all(not echo for _, echo in term.prompts)
    policy = runtime.guard.compiled.policy
    assert policy.users["carol"].roles == ("operator",)
    assert policy.version == 2
    assert any(r.event is EventType.POLICY_CHANGE for r in read_records(tmp_path / "log"))
    assert all(b"Fresh-Password-9" not in f.read_bytes() for f in (tmp_path / "log").iterdir() if f.is_file())


@shell_test()
async def test_lint_errors_refuse_a_change(runtime: Runtime, tmp_path: Path) -> None:
    term = ScriptedTerminal()
    shell = MeterShell(runtime, await login(runtime, "root"), term)
    assert await shell.execute("user remove root") == EXIT_DENIED
    assert "user_management" in term.output
    assert "root" in runtime.guard.compiled.policy.users


STUB = StubPolicies()


@shell_test(STUB)
async def test_edits_go_through_the_daemons_policy_service(runtime: Runtime, tmp_path: Path) -> None:
    term = ScriptedTerminal()
    shell = MeterShell(runtime, await login(runtime, "root"), term)
    assert await shell.execute("user roles bob operator") == EXIT_OK, term.output
    policy, how = STUB.edits[-1]
    assert how == "user_roles"
    assert policy.users["bob"].roles == ("operator",)
    STUB.status = 1
    assert await shell.execute("user roles bob viewer") == EXIT_DENIED
    assert "refused by the policy service" in term.output
    assert runtime.guard.compiled.policy.users["bob"].roles == ("operator",)


CREDENTIALS = StubPolicies()


@shell_test(CREDENTIALS)
async def test_reset_password_changes_the_credentials_never_the_policy(
    runtime: Runtime, tmp_path: Path
) -> None:
    new, other = (secrets.token_urlsafe(12) + "-Aa1" for _ in range(2))
    term = ScriptedTerminal([new, new])
    guard = runtime.guard
    before = guard.compiled
    shell = MeterShell(runtime, await login(runtime, "root"), term)
    assert await shell.execute("user reset-password bob") == EXIT_OK, term.output
    assert CREDENTIALS.edits == []
    assert CREDENTIALS.credential_changes == ["password_reset"]
    assert guard.compiled is before
    assert await guard.authenticate(Channel.SSH, "test", "bob", Password(new))
    assert not await guard.authenticate(Channel.SSH, "test", "bob", Password(PASSWORD))
    CREDENTIALS.status = 1
    term.lines = [other, other]
    assert await shell.execute("user reset-password bob") == EXIT_DENIED
    assert "refused by the credential store" in term.output
    assert await guard.authenticate(Channel.SSH, "test", "bob", Password(new))


@shell_test()
async def test_user_key_changes_the_credentials_never_the_policy(runtime: Runtime, tmp_path: Path) -> None:
    _, public = make_key(tmp_path, "bob-key")
    key_type, blob = public.split()[:2]
    guard = runtime.guard
    before = guard.compiled
    term = ScriptedTerminal()
    shell = MeterShell(runtime, await login(runtime, "root"), term)
    assert await shell.execute(f"user key bob add {public}") == EXIT_OK, term.output
    assert guard.key_acceptable(Channel.SSH, "bob", PublicKey(key_type, blob))
    assert await shell.execute(f"user key bob add {key_type} {blob}") == EXIT_DENIED
    assert "already has this key" in term.output
    assert await shell.execute(f"user key bob remove {key_type} {blob}") == EXIT_OK, term.output
    assert not guard.key_acceptable(Channel.SSH, "bob", PublicKey(key_type, blob))
    assert await shell.execute(f"user key nobody add {public}") == EXIT_DENIED
    assert await shell.execute(f"user key bob swap {public}") == EXIT_USAGE
    assert guard.compiled is before
    changes = [r.detail for r in read_records(tmp_path / "log") if r.event is EventType.PASSWORD_CHANGE]
    assert [(d.get("how"), d.get("users")) for d in changes if "store" in d] == [
        ("key_add", "bob"),
        ("key_remove", "bob"),
    ]


@shell_test()
async def test_reset_pin_sets_a_panel_pin_of_digits(runtime: Runtime, tmp_path: Path) -> None:
    pin = "".join(secrets.choice("0123456789") for _ in range(8))
    guard = runtime.guard
    term = ScriptedTerminal([pin, pin, "12ab56", "12ab56", "12345", "12345"])
    shell = MeterShell(runtime, await login(runtime, "root"), term)
    assert await shell.execute("user reset-pin bob") == EXIT_OK, term.output
    assert all(not echo for _, echo in term.prompts)
    assert await guard.authenticate(Channel.PANEL, "panel", "bob", Pin(pin))
    assert await shell.execute("user reset-pin bob") == EXIT_DENIED
    assert await shell.execute("user reset-pin bob") == EXIT_DENIED
    assert term.output.count("a PIN is 6 to 12 digits") == 2
    assert await guard.authenticate(Channel.PANEL, "panel", "bob", Pin(pin))


def test_the_command_table_is_well_formed() -> None:
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names))
    assert [c.name for c in COMMANDS if c.permission is None] == ["exit"]
    for command in COMMANDS:
        assert command.resource.startswith("/")
        assert command.summary
        assert command.max_args is None or command.min_args <= command.max_args


@pytest.mark.parametrize(
    "line",
    [
        "help",
        "whoami",
        "show readings",
        "show status",
        "show settings",
        "show comm",
        "show time",
        "approvals",
    ],
)
def test_viewing_commands_exist(line: str) -> None:
    assert any(line.split() == list(c.words) for c in COMMANDS)
