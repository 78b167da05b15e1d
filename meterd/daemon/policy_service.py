"""The meter's side of ``meterctl policy push|rollback``: commands run over an SSH session.

The configuration tool runs ``meterd-policy push [--dry-run]`` (bundle on
standard input), ``meterd-policy rollback [--to VERSION] [--dry-run]`` or
``meterd-policy versions|status`` as an SSH command (``status`` prints one JSON
object: meter id and labels, policy store version, the policy's own version,
the bundle in force and its hash).  Every command first asks the
guard for ``user_management`` on ``/meter/users``; what it changes goes
through :class:`~meterd.daemon.policies.PolicyManager`, so a push is
validated, linted, stored, installed and recorded exactly like any other
change, and a refused push leaves the running policy untouched.  A pushed
bundle passes :class:`~meterd.daemon.bundle_gate.BundleGate` first (format 2
signatures, threshold, version, expiry, targets, hash); every refusal is
recorded with its reason.

Exit statuses: 0 applied (or a clean dry run), 1 refused or denied, 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from meterd.daemon.bundle_gate import Accepted, BundleGate
from meterd.daemon.policies import CredentialStoreError, PolicyManager, PolicyRefusedError, summarise_text
from meterd.errors import ChannelError, ConfigError, PolicyError, PolicyValidationError
from meterd.guard import Guard, Session
from meterd.policy.bundle import load_verify_key
from meterd.policy.credentials import Credentials
from meterd.policy.files import read_policy_text
from meterd.policy.model import Policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Outcome
from meterd.policy.trust import KeySet, MeterIdentity
from meterd.seclog import EventType

COMMAND = "meterd-policy"
RESOURCE = "/meter/users"
Reply = tuple[int, str]


class _UsageError(ChannelError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def _parser() -> _Parser:
    parser = _Parser(prog=COMMAND, add_help=False)
    sub = parser.add_subparsers(dest="action", required=True)
    push = sub.add_parser("push", add_help=False)
    push.add_argument("--dry-run", action="store_true")
    rollback = sub.add_parser("rollback", add_help=False)
    rollback.add_argument("--to", type=int, default=None)
    rollback.add_argument("--dry-run", action="store_true")
    sub.add_parser("versions", add_help=False)
    sub.add_parser("status", add_help=False)
    return parser


class PolicyService:
    """Runs policy commands for an authenticated session.

    Args:
        manager: The daemon's policy manager.
        gate: What verifies bundles; by default a meter with no signing keys
            (format 1 bundles only) and no id.
    """

    def __init__(self, manager: PolicyManager, gate: BundleGate | None = None) -> None:
        self.manager = manager
        self.gate = gate or BundleGate(None, MeterIdentity("", frozenset()), manager.store.directory)

    @classmethod
    def from_settings(
        cls, manager: PolicyManager, key_files: Sequence[Path], threshold: int, meter: MeterIdentity
    ) -> PolicyService:
        """Build the service, loading the configured signing keys and the bundle state.

        Raises:
            ConfigError: A key file is unreadable or not an Ed25519 public key, or
                the bundle state is corrupt.
        """
        keys = []
        for key_file in key_files:
            try:
                pem = key_file.read_bytes()
            except OSError as e:
                raise ConfigError(f"cannot read: {e.strerror}", source=str(key_file)) from e
            keys.append(load_verify_key(pem, str(key_file)))
        configured = KeySet.of(keys, threshold) if keys else None
        return cls(manager, BundleGate(configured, meter, manager.store.directory))

    async def run(self, guard: Guard, session: Session, argv: Sequence[str], payload: bytes) -> Reply:
        """Run one command line (without the leading ``meterd-policy``)."""
        try:
            args = _parser().parse_args(list(argv))
        except _UsageError as e:
            return (
                2,
                f"usage: {COMMAND} push [--dry-run] | rollback [--to VERSION] [--dry-run] | versions | status"
                f" ({e})",
            )
        permit = await guard.authorize(
            session,
            Permission.USER_MANAGEMENT,
            RESOURCE,
            event=EventType.CONFIG_ACCESS,
            detail={"command": args.action},
        )
        if not permit.allowed:
            return 1, f"denied: user_management ({permit.detail or permit.reason})"
        # A push or rollback records its own outcome (a policy change or its refusal).
        reply = await self._allowed(guard, session, args, payload)
        await permit.done()
        return reply

    async def _allowed(
        self, guard: Guard, session: Session, args: argparse.Namespace, payload: bytes
    ) -> Reply:
        if args.action == "versions":
            current = self.manager.store.current()
            lines = [f"{v}{' (in force)' if v == current else ''}" for v in self.manager.store.versions()]
            return 0, "\n".join(lines)
        if args.action == "status":
            status = self.gate.status(self.manager.store.current(), guard.policy.version)
            return 0, json.dumps(status, sort_keys=True)
        if args.action == "push":
            return await self._push(guard, session, payload, dry_run=args.dry_run)
        return await self._rollback(guard, session, args.to, dry_run=args.dry_run)

    async def edit(self, guard: Guard, session: Session, policy: Policy, how: str) -> Reply:
        """Put a policy edited in the meter shell in force (the shell has had its decision)."""
        try:
            applied = await self.manager.apply(
                guard, policy, by=session.principal, channel=session.channel, source=session.source, how=how
            )
        except PolicyRefusedError as e:
            return 1, "\n".join(["refused; the running policy is unchanged:", *e.problems])
        return 0, f"applied: policy store version {applied.version}"

    async def set_credentials(
        self, guard: Guard, session: Session, credentials: Credentials, how: str
    ) -> Reply:
        """Store and put in force credentials changed in the meter shell (it has had its decision)."""
        try:
            await self.manager.set_credentials(
                guard,
                credentials,
                by=session.principal,
                channel=session.channel,
                source=session.source,
                how=how,
            )
        except CredentialStoreError as e:
            return 1, e.render()
        return 0, "credentials stored"

    async def _refuse(
        self, guard: Guard, session: Session, how: str, problems: list[str], status: int, *, reason: str = ""
    ) -> Reply:
        detail: dict[str, str | int] = {"how": how, "refused": summarise_text("; ".join(problems))}
        if reason:
            detail["reason"] = reason
        await guard.policy_changed(session, Outcome.DENY, detail)
        return status, "\n".join(["refused; the running policy is unchanged:", *problems])

    async def _push(self, guard: Guard, session: Session, payload: bytes, *, dry_run: bool) -> Reply:
        # Bundle verification loads with the first push (see BundleGate).
        from meterd.policy.signed import BundleRefusedError, decode_any  # noqa: PLC0415

        try:
            bundle = decode_any(payload)
        except BundleRefusedError as e:
            return await self._refuse(guard, session, "push", [e.render()], 2, reason=e.reason.value)
        except PolicyError as e:
            return await self._refuse(guard, session, "push", [e.render()], 2)
        try:
            accepted = self.gate.check(bundle)
        except BundleRefusedError as e:
            return await self._refuse(guard, session, "push", [e.render()], 1, reason=e.reason.value)
        try:
            # Off the event loop: merging demo credentials reads files.
            policy = await asyncio.to_thread(self.manager.parse_pushed, bundle.policy_text, "pushed policy")
        except PolicyValidationError as e:
            return await self._refuse(guard, session, "push", [err.render() for err in e.errors], 2)
        except ConfigError as e:
            return await self._refuse(guard, session, "push", [e.render()], 2)
        return await self._apply(guard, session, policy, "push", dry_run=dry_run, accepted=accepted)

    async def _rollback(self, guard: Guard, session: Session, to: int | None, *, dry_run: bool) -> Reply:
        store = self.manager.store
        current = store.current()
        earlier = [v for v in store.versions() if current is None or v < current]
        target = to if to is not None else (earlier[-1] if earlier else None)
        if target is None or target == current:
            return 2, "no earlier policy version to roll back to"
        try:
            policy = read_policy_text(store.read(target), f"policy version {target}")
        except ConfigError as e:
            return 2, e.render()
        return await self._apply(guard, session, policy, f"rollback to {target}", dry_run=dry_run)

    async def _apply(
        self,
        guard: Guard,
        session: Session,
        policy: Policy,
        how: str,
        *,
        dry_run: bool,
        accepted: Accepted | None = None,
    ) -> Reply:
        if dry_run:
            try:
                stripped, _, findings = self.manager.prospect(guard, policy)
            except PolicyRefusedError as e:
                return 1, "\n".join(["dry run: would be refused:", *e.problems])
            from meterd.policy.diff import diff_policies  # noqa: PLC0415 - a dry run's only

            lines = [
                "dry run: nothing applied",
                *(c.render() for c in diff_policies(guard.policy, stripped)),
            ]
            lines += [f.render() for f in findings]
            return 0, "\n".join(lines)
        try:
            applied = await self.manager.apply(
                guard,
                policy,
                by=session.principal,
                channel=session.channel,
                source=session.source,
                how=how.split(maxsplit=1)[0],
                note={"bundle_version": accepted.version} if accepted and accepted.version else None,
            )
        except PolicyRefusedError as e:
            return 1, "\n".join(["refused; the running policy is unchanged:", *e.problems])
        if accepted is not None:
            try:
                await asyncio.to_thread(self.gate.commit, accepted, applied.version)
            except OSError as e:
                return 1, f"applied as policy store version {applied.version}, but the bundle state: {e}"
        lines = [f"applied: policy store version {applied.version}", *(c.render() for c in applied.changes)]
        lines += [w.render() for w in applied.warnings]
        return 0, "\n".join(lines)
