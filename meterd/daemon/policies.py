"""Putting a policy in force: validate, lint, store a version, compile, install, record.

Start-up, reload (SIGHUP), a push from the configuration tool, a rollback and
an edit from the meter shell all go through :meth:`PolicyManager.apply`, so
each is checked and recorded the same way.  A refused policy leaves the
running one untouched.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterd.daemon.demo import apply_demo_accounts
from meterd.daemon.demo_pki import apply_demo_pki
from meterd.daemon.store import PolicyStore
from meterd.errors import ConfigError, PolicyError
from meterd.guard import Guard
from meterd.policy.compile import CompiledPolicy, compile_policy
from meterd.policy.diff import AccessChange, diff_policies
from meterd.policy.dump import dump_policy
from meterd.policy.files import read_policy_text
from meterd.policy.lint import Finding, Severity, lint_policy
from meterd.policy.loader import load_policy
from meterd.policy.model import Policy
from meterd.policy.request import Channel, Outcome
from meterd.seclog import EventType

log = logging.getLogger(__name__)
SUMMARY_LIMIT = 240


class PolicyRefusedError(PolicyError):
    """A policy failed validation or lint; the running policy stays in force.

    Attributes:
        problems: Every reason, one line each.
    """

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        super().__init__("policy refused: " + "; ".join(problems), source=source)


@dataclass(frozen=True, slots=True)
class Applied:
    """The result of putting a policy in force.

    Attributes:
        version: The store version now in force.
        changes: Who gained and who lost which permission.
        warnings: Lint warnings (they do not block).
    """

    version: int
    changes: tuple[AccessChange, ...]
    warnings: tuple[Finding, ...]


def check(policy: Policy) -> list[Finding]:
    """Return lint findings; raise :class:`PolicyRefusedError` if any is an error.

    An error includes leaving nobody able to manage users (the last administrator rule).
    """
    findings = lint_policy(policy)
    errors = [f.render() for f in findings if f.severity is Severity.ERROR]
    if errors:
        raise PolicyRefusedError(errors)
    return findings


def summarise(changes: tuple[AccessChange, ...]) -> str:
    """A bounded one-line summary of access changes for the security log."""
    text = " ".join(
        f"{'+' if c.gained else '-'}{c.principal}:{c.permission.value}@{c.scope}" for c in changes
    )
    return summarise_text(text)


class PolicyManager:
    """The daemon's policy in force and its versions."""

    def __init__(self, configured: Path, state_dir: Path, *, demo_accounts: bool) -> None:
        self.configured = configured
        self.state_dir = state_dir
        self.demo_accounts = demo_accounts
        self.store = PolicyStore(state_dir / "policy")
        #: Set when demo credentials were created on this start.
        self.new_demo_credentials: Path | None = None
        #: Set when demo certificates were issued on this start.
        self.new_demo_pki: Path | None = None

    def read_configured(self) -> Policy:
        """Read the configured policy file (with demo credentials and certificates merged in, if enabled).

        Demo credentials and certificates missing so far are made here.

        Raises:
            ConfigError: If it cannot be read or is invalid.
        """
        try:
            text = self.configured.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read: {e.strerror}", source=str(self.configured)) from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"not valid TOML: {e}", source=str(self.configured)) from e
        return self._parse(text, str(self.configured), create=True)

    def parse_pushed(self, text: str, source: str) -> Policy:
        """Parse and validate a pushed policy text, with existing demo credentials merged in, if enabled.

        A pushed policy comes from the configuration tool and carries no demo
        credentials; it gets those the meter has, as the configured file does,
        but nothing is created or written (a dry run or a refused push changes nothing).

        Raises:
            PolicyError: It is not TOML or not a valid policy.
            ConfigError: The stored demo accounts are unreadable.
        """
        return self._parse(text, source, create=False)

    def _parse(self, text: str, source: str, *, create: bool) -> Policy:
        try:
            data: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise PolicyError(f"not valid TOML: {e}", source=source) from e
        if self.demo_accounts:
            created = apply_demo_accounts(data, self.state_dir, create=create)
            self.new_demo_credentials = created or self.new_demo_credentials
            self.new_demo_pki = apply_demo_pki(data, self.state_dir, issue=create) or self.new_demo_pki
        return load_policy(data, source)

    def initial(self) -> tuple[CompiledPolicy, int]:
        """The policy to start with: the stored version in force, or the configured file on first start.

        Raises:
            ConfigError: If neither yields a valid policy (the daemon must not start).
        """
        version = self.store.current()
        if version is None:
            policy = self.read_configured()
            check(policy)
            version = self.store.commit(dump_policy(policy))
        else:
            policy = read_policy_text(self.store.read(version), f"{self.store.directory}/v{version:06d}.toml")
            check(policy)
        return compile_policy(policy), version

    async def apply(
        self,
        guard: Guard,
        policy: Policy,
        *,
        by: str,
        channel: Channel,
        source: str = "",
        how: str,
        note: dict[str, str | int] | None = None,
    ) -> Applied:
        """Check ``policy``, store it as a new version and put it in force, recording who did it.

        ``note`` adds to the record's detail (a pushed bundle's version).

        Raises:
            PolicyRefusedError: It fails lint; the refusal is recorded and nothing changes.
        """
        try:
            findings = check(policy)
            compiled = compile_policy(policy)
        except (PolicyRefusedError, ConfigError) as e:
            problems = e.problems if isinstance(e, PolicyRefusedError) else [e.render()]
            await guard.record(
                EventType.POLICY_CHANGE,
                by,
                Outcome.DENY,
                channel=channel,
                source=source,
                detail={"how": how, "refused": summarise_text("; ".join(problems))},
            )
            raise PolicyRefusedError(problems) from e
        changes = tuple(diff_policies(guard.compiled.policy, policy))
        version = self.store.commit(dump_policy(policy))
        guard.install_policy(compiled, version)
        await guard.record(
            EventType.POLICY_CHANGE,
            by,
            Outcome.ALLOW,
            channel=channel,
            source=source,
            detail={
                "how": how,
                "version": version,
                "policy_version": policy.version,
                "gained": sum(c.gained for c in changes),
                "lost": sum(not c.gained for c in changes),
                "changes": summarise(changes),
                **(note or {}),
            },
        )
        log.info("policy version %d in force (%s by %s): %d access changes", version, how, by, len(changes))
        warnings = tuple(f for f in findings if f.severity is Severity.WARNING)
        return Applied(version, changes, warnings)

    async def reload(self, guard: Guard) -> Applied:
        """Re-read the configured file and apply it (SIGHUP).

        Raises:
            ConfigError: The file is unreadable or invalid (recorded; nothing changes).
        """
        try:
            policy = self.read_configured()
        except ConfigError as e:
            await guard.record(
                EventType.POLICY_CHANGE,
                "meterd",
                Outcome.DENY,
                channel=Channel.LOCAL,
                detail={"how": "reload", "refused": summarise_text(e.render())},
            )
            raise
        return await self.apply(guard, policy, by="meterd", channel=Channel.LOCAL, how="reload")


def summarise_text(text: str) -> str:
    """Clip free text to what a log detail may hold."""
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 3] + "..."
