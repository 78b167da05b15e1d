"""The guard's state and the one way it writes a record.

:class:`GuardCore` holds what every role of the guard shares: the policy and
the credentials in force (each swapped in one step), the clocks, the stateful
rules (login lockout, dual control, the demand-reset window), the session
registry, and the audit step every record goes through.  The roles build on
it: :mod:`meterd.guard.login` (authentication and sessions),
:mod:`meterd.guard.authorize` (deciding, permits, approvals),
:mod:`meterd.guard.view` (side-effect-free listings) and
:mod:`meterd.guard.log_verbs` (records that are not decisions, and the log's
contents); :class:`meterd.guard.Guard` joins them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from meterd.guard.audit import Audit, Detail, EventType, SecurityLog
from meterd.guard.demand_window import DemandResetWindow
from meterd.guard.dual_control import DualControl
from meterd.guard.fastpath import AllowMemory
from meterd.guard.lockout import LoginLockout
from meterd.guard.observer import GuardObserver, NullObserver
from meterd.guard.sessions import SessionRegistry
from meterd.policy.compile import CompiledPolicy, compile_policy
from meterd.policy.credentials import Credentials, initial_credentials
from meterd.policy.directory import with_directory
from meterd.policy.model import DirectoryPrincipal, Policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, Outcome

if TYPE_CHECKING:
    from meterd.guard.directory_gate import DirectoryGate


class GuardCore:
    """The state every role of the guard shares.  All methods run on the daemon's event loop.

    Args:
        compiled: The policy in force.
        seclog: The security log every decision is recorded in.
        observer: Metrics sink.
        monotonic: Clock for idle timeouts and login lockouts.
        wall: Clock for the demand-reset lockout period (it must survive restarts).
        last_demand_reset: Wall time of the last peak-demand reset, from the meter.
        policy_version: The policy-store version of ``compiled``.
        credentials: The meter's local credentials (default: those ``compiled``'s policy carries).
        directory: Directory login (LDAP or RADIUS), or None for local logins only.
    """

    def __init__(
        self,
        compiled: CompiledPolicy,
        seclog: SecurityLog,
        *,
        observer: GuardObserver | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        last_demand_reset: float | None = None,
        policy_version: int | None = None,
        credentials: Credentials | None = None,
        directory: DirectoryGate | None = None,
    ) -> None:
        # _base is the policy as installed; _compiled adds the directory users in force
        # (see meterd.guard.directory_login) and is what every decision uses.
        self._base = compiled
        self._compiled = compiled
        self.directory = directory
        self._credentials = credentials if credentials is not None else initial_credentials(compiled.policy)
        #: The policy-store version in force (follows push, rollback, shell edits and reload).
        self.policy_version = policy_version or 0
        self.observer: GuardObserver = observer or NullObserver()
        self._audit = Audit(seclog, self.observer, monotonic=monotonic, wall=wall)
        self._allows = AllowMemory(self._audit, monotonic)
        self._monotonic = monotonic
        self._wall = wall
        self.sessions = SessionRegistry()
        self.lockout = LoginLockout()
        self.dual_control = DualControl()
        self.demand_window = DemandResetWindow(last_demand_reset)
        # The sweep under way, which the next one waits for (see Guard.sweep).
        self._sweep_task: asyncio.Future[None] | None = None
        if policy_version is not None:
            self.observer.policy_in_force(policy_version, compiled.policy.version)

    # -- policy -----------------------------------------------------------

    @property
    def compiled(self) -> CompiledPolicy:
        """The policy in force, as installed (without the directory users logged in now)."""
        return self._base

    def install_policy(self, compiled: CompiledPolicy, version: int | None = None) -> CompiledPolicy:
        """Put ``compiled`` in force in one step; return the policy it replaced.

        Args:
            compiled: The new policy.
            version: Its policy-store version (None: a policy that was not stored, in tests).
        """
        previous, self._base = self._base, compiled
        self._compiled = self._with_directory(compiled)
        if version is not None:
            self.policy_version = version
        self.observer.policy_in_force(self.policy_version, compiled.policy.version)
        return previous

    def _with_directory(self, base: CompiledPolicy) -> CompiledPolicy:
        """``base`` with the directory users in force added to its table (``base`` itself if none)."""
        principals = self.directory.principals if self.directory is not None else {}
        policy = with_directory(base.policy, principals)
        return base if policy is base.policy else compile_policy(policy)

    def put_directory_principal(self, principal: DirectoryPrincipal, server: str) -> None:
        """Put a directory user the policy mapped in force (a directory login succeeded)."""
        if self.directory is None:
            raise ValueError("no directory configured")
        self.directory.put(principal, server, self._monotonic())
        self._compiled = self._with_directory(self._base)

    def now(self) -> float:
        """The guard's monotonic clock."""
        return self._monotonic()

    @property
    def credentials(self) -> Credentials:
        """The local credentials in force."""
        return self._credentials

    def install_credentials(self, credentials: Credentials) -> None:
        """Put a new credentials snapshot in force in one step (checks under way keep the old one)."""
        self._credentials = credentials

    @property
    def policy(self) -> Policy:
        """The policy in force, with the directory users logged in now (change it: :meth:`install_policy`)."""
        return self._compiled.policy

    # -- recording --------------------------------------------------------

    @property
    def seclog(self) -> SecurityLog:
        """The security log (for the daemon's wiring; channels go through the guard's verbs)."""
        return self._audit.seclog

    async def record(
        self,
        event: EventType,
        principal: str,
        outcome: Outcome,
        *,
        channel: Channel,
        source: str = "",
        permission: Permission | None = None,
        resource: str = "",
        detail: Detail | None = None,
        budgeted: bool = False,
    ) -> bool:
        """Append a record that is not a decision (see :meth:`Audit.record`).

        Returns:
            False if the log could not take it (the caller must then fail closed).
        """
        return await self._audit.record(
            self._compiled,
            event,
            principal,
            outcome,
            channel=channel,
            source=source,
            permission=permission,
            resource=resource,
            detail=detail,
            budgeted=budgeted,
        )

    async def _commit(self, decision: Decision, event: EventType | None, detail: Detail | None) -> Decision:
        """Record a decision; an allow whose record is not durable becomes a denial."""
        return await self._audit.commit(self._compiled, decision, event, detail)
