"""Putting a policy in force: validate, lint, store a version, compile, install, record.

Start-up, reload (SIGHUP), a push from the configuration tool, a rollback and
an edit from the meter shell all go through :meth:`PolicyManager.apply`, so
each is checked and recorded the same way.  A refused policy leaves the
running one untouched.

Credentials are the meter's: the policy put in force carries none.  Its users'
password hashes, PINs and SSH keys come from the credential store
(:mod:`meterd.daemon.credential_store`); credentials a policy carries are
taken only for users the store holds nothing for (:func:`~meterd.policy.credentials.seed`),
so a push never changes an existing credential.  A change that would leave
no holder of ``user_management`` able to log in is refused.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meterd.daemon.credential_store import CredentialStore
from meterd.daemon.demo import apply_demo_accounts
from meterd.daemon.demo_pki import apply_demo_pki
from meterd.daemon.store import PolicyStore
from meterd.errors import ConfigError, PolicyError
from meterd.guard import Actor, Guard
from meterd.guard.log_verbs import DAEMON
from meterd.policy.compile import CompiledPolicy, compile_policy
from meterd.policy.credentials import (
    Credentials,
    changed_users,
    lint_credentials,
    seed,
    user_management_logins,
    without_credentials,
)
from meterd.policy.files import read_policy_text
from meterd.policy.lint import Finding, Severity, lint_policy
from meterd.policy.loader import load_policy
from meterd.policy.model import Policy
from meterd.policy.request import Channel, Outcome
from meterd.record import record
from meterd.statedir import POLICY_STORE

if TYPE_CHECKING:
    from meterd.policy.diff import AccessChange

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


@record
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


def check(
    policy: Policy,
    credentials: Credentials | None = None,
    *,
    before: tuple[Policy, Credentials] | None = None,
) -> list[Finding]:
    """Return lint findings; raise :class:`PolicyRefusedError` if any is an error.

    An error includes leaving nobody able to manage users (the last administrator rule).

    Args:
        policy: The policy to check.
        credentials: The meter's credentials with ``policy`` in force: users
            without one are reported.
        before: The policy and credentials in force now: a change that leaves
            no holder of ``user_management`` able to log in, where one could
            before, is an error.
    """
    findings = lint_policy(policy)
    if credentials is not None:
        findings += lint_credentials(policy, credentials)
        if (
            before is not None
            and user_management_logins(*before)
            and not user_management_logins(policy, credentials)
        ):
            findings.append(
                Finding(
                    Severity.ERROR,
                    "no-user-manager-login",
                    "policy",
                    "no enabled holder of user_management would have a credential on the meter: "
                    "nobody could log in to manage users; keep one who has a credential",
                )
            )
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
        self.store = PolicyStore(state_dir / POLICY_STORE.name)
        self.credentials = CredentialStore(state_dir)
        #: The credentials :meth:`initial` found or seeded (the guard starts with them).
        self.initial_credentials = Credentials()
        #: Users whose credentials :meth:`initial` added or dropped, to record once the log is open.
        self._seeded_at_start: tuple[list[str], list[str]] = ([], [])
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
            known = self.credentials.read().users if create else ()
            created = apply_demo_accounts(data, self.state_dir, create=create, known=known)
            self.new_demo_credentials = created or self.new_demo_credentials
            self.new_demo_pki = apply_demo_pki(data, self.state_dir, issue=create) or self.new_demo_pki
        return load_policy(data, source)

    def initial(self) -> tuple[CompiledPolicy, int]:
        """The policy to start with: the stored version in force, or the configured file on first start.

        Raises:
            ConfigError: If neither yields a valid policy (the daemon must not start).
        """
        known = self.credentials.read()
        version = self.store.current()
        if version is None:
            policy = self.read_configured()
            check(policy)
            credentials = seed(known, policy)
            policy = without_credentials(policy)
            self._write_credentials(known, credentials)
            version = self.store.commit(_dump(policy))
        else:
            policy = read_policy_text(self.store.read(version), f"{self.store.directory}/v{version:06d}.toml")
            check(policy)
            # A version stored before the credential store existed still carries them: they seed it.
            credentials = seed(known, policy)
            policy = without_credentials(policy)
            self._write_credentials(known, credentials)
        self.initial_credentials = credentials
        self._seeded_at_start = changed_users(known, credentials)
        return compile_policy(policy), version

    def _write_credentials(self, known: Credentials, credentials: Credentials) -> None:
        if credentials != known or not self.credentials.exists():
            try:
                self.credentials.write(credentials)
            except OSError as e:
                raise ConfigError(f"cannot write: {e.strerror}", source=str(self.credentials.path)) from e

    async def record_start(self, guard: Guard) -> None:
        """Record the credentials :meth:`initial` seeded or dropped (the log was not open then)."""
        await record_credentials(guard, *self._seeded_at_start, by=DAEMON, channel=Channel.LOCAL, how="start")
        self._seeded_at_start = ([], [])

    def prospect(self, guard: Guard, policy: Policy) -> tuple[Policy, Credentials, list[Finding]]:
        """What putting ``policy`` in force gives: it without credentials, the credentials, findings.

        Raises:
            PolicyRefusedError: It fails lint or would leave nobody able to log in to manage users.
        """
        credentials = seed(guard.credentials, policy)
        stripped = without_credentials(policy)
        findings = check(stripped, credentials, before=(guard.policy, guard.credentials))
        return stripped, credentials, findings

    async def set_credentials(
        self, guard: Guard, credentials: Credentials, *, by: str, channel: Channel, source: str, how: str
    ) -> None:
        """Store ``credentials`` and put them in force (``passwd``, ``user reset-password``, key changes).

        Raises:
            CredentialStoreError: The store could not be written; nothing changed.
        """
        before = guard.credentials
        # Written in the event loop, like a policy version, so no push can seed in between.
        try:
            self.credentials.write(credentials)
        except OSError as e:
            raise CredentialStoreError(f"cannot write the credential store: {e.strerror}") from e
        guard.install_credentials(credentials)
        await record_credentials(
            guard, *changed_users(before, credentials), by=by, channel=channel, source=source, how=how
        )

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
        before = guard.credentials
        try:
            policy, credentials, findings = self.prospect(guard, policy)
            compiled = compile_policy(policy)
            # Additions first, removals once the policy version is stored: a crash in between
            # leaves a store that seeding at the next start brings in line with either version.
            added = Credentials({**before.users, **credentials.users})
            if added != before:
                try:
                    self.credentials.write(added)
                except OSError as e:
                    raise PolicyRefusedError([f"cannot write the credential store: {e.strerror}"]) from e
        except (PolicyRefusedError, ConfigError) as e:
            problems = e.problems if isinstance(e, PolicyRefusedError) else [e.render()]
            await guard.policy_changed(
                Actor(by, channel, source),
                Outcome.DENY,
                {"how": how, "refused": summarise_text("; ".join(problems))},
            )
            raise PolicyRefusedError(problems) from e
        changes = tuple(_diff(guard.policy, policy))
        version = self.store.commit(_dump(policy))
        if credentials != added:
            try:
                self.credentials.write(credentials)
            except OSError as e:
                # The policy is in force; the next start or change drops the stale entries.
                log.error("credential store: removed users not dropped yet: %s", e.strerror)
        guard.install_credentials(credentials)
        guard.install_policy(compiled, version)
        await guard.policy_changed(
            Actor(by, channel, source),
            Outcome.ALLOW,
            {
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
        await record_credentials(
            guard, *changed_users(before, credentials), by=by, channel=channel, source=source, how=how
        )
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
            await guard.policy_changed(
                Actor(DAEMON, Channel.LOCAL),
                Outcome.DENY,
                {"how": "reload", "refused": summarise_text(e.render())},
            )
            raise
        return await self.apply(guard, policy, by=DAEMON, channel=Channel.LOCAL, how="reload")


def _dump(policy: Policy) -> str:
    # The writer and the differ load with the first change of policy, not with every start.
    from meterd.policy.dump import dump_policy  # noqa: PLC0415

    return dump_policy(policy)


def _diff(old: Policy, new: Policy) -> list[AccessChange]:
    from meterd.policy.diff import diff_policies  # noqa: PLC0415

    return diff_policies(old, new)


def summarise_text(text: str) -> str:
    """Clip free text to what a log detail may hold."""
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 3] + "..."


class CredentialStoreError(PolicyError):
    """The credential store could not be written; the credentials in force are unchanged."""


async def record_credentials(
    guard: Guard,
    changed: list[str],
    removed: list[str],
    *,
    by: str,
    channel: Channel,
    source: str = "",
    how: str,
) -> None:
    """Record which users' credentials were set (``password_change``) or dropped (``password_delete``)."""
    for dropped, users in ((False, changed), (True, removed)):
        if users:
            await guard.credentials_changed(
                Actor(by, channel, source),
                {"how": how, "store": "credentials", "users": summarise_text(",".join(users))},
                removed=dropped,
            )
