"""Dual control as a stateful rule: check, commit, release.

A use of a listed permission waits for a second, different approver:
:meth:`DualControl.check` says whether it must, :meth:`DualControl.commit`
opens the wait, :meth:`DualControl.release` ends it (decided, timed out or
abandoned).

A request becomes a :class:`PendingApproval` with a short id; any other
principal who holds the same permission may approve or reject it, from any
channel, before the policy's ``dual_control_timeout``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Collection
from dataclasses import dataclass, field

from meterd.policy.permissions import Permission


@dataclass(slots=True, eq=False)
class PendingApproval:
    """A dual-control request waiting for its second person.

    Attributes:
        id: Short number to type at a prompt (``approve 7``).
        requester: Principal who asked.
        permission: What they asked to use.
        resource: Where.
        action: What the channel will do once approved, for the approver to read.
        result: Resolves to ``(approved, approver)``.
    """

    id: int
    requester: str
    permission: Permission
    resource: str
    action: str
    result: asyncio.Future[tuple[bool, str]] = field(repr=False)


class DualControl:
    """The pending approvals of one daemon."""

    def __init__(self) -> None:
        self._pending: dict[int, PendingApproval] = {}
        self._ids = itertools.count(1)

    @staticmethod
    def check(permission: Permission, listed: Collection[Permission]) -> bool:
        """Whether a use of ``permission`` must wait for a second person (``listed``: the policy's list)."""
        return permission in listed

    def commit(self, requester: str, permission: Permission, resource: str, action: str) -> PendingApproval:
        """Open a pending approval for an allowed use (must run inside the event loop)."""
        future: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        pending = PendingApproval(next(self._ids), requester, permission, resource, action, future)
        self._pending[pending.id] = pending
        return pending

    def get(self, approval_id: int) -> PendingApproval | None:
        """Return a still-pending approval, or None."""
        return self._pending.get(approval_id)

    def release(self, pending: PendingApproval) -> None:
        """Forget an approval (decided, timed out or abandoned)."""
        self._pending.pop(pending.id, None)

    def pending(self) -> list[PendingApproval]:
        """Every approval still waiting, oldest first."""
        return sorted(self._pending.values(), key=lambda p: p.id)
