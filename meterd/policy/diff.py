"""Who gains and who loses which permission between two policies.

Pure: compares effective ``(permission, scope)`` holdings per principal, so a
change of role definitions, group membership or scope shows up as the access
it actually changes, not as the edit that caused it.
"""

from __future__ import annotations

from meterd.policy.grants import effective_pairs, principals
from meterd.policy.model import Policy
from meterd.policy.permissions import Permission
from meterd.record import record


@record
class AccessChange:
    """One permission gained or lost by one principal at one scope.

    Attributes:
        principal: Name.
        permission: The permission.
        scope: Where.
        gained: True for gained, False for lost.

    """

    principal: str
    permission: Permission
    scope: str
    gained: bool

    def render(self) -> str:
        """Return ``+ name: permission @ scope`` (or ``-`` for a loss)."""
        return f"{'+' if self.gained else '-'} {self.principal}: {self.permission.value} @ {self.scope}"


def _holdings(policy: Policy) -> dict[str, frozenset[tuple[Permission, str]]]:
    return {p.name: effective_pairs(policy, p.name) if p.enabled else frozenset() for p in principals(policy)}


def diff_policies(old: Policy, new: Policy) -> list[AccessChange]:
    """Return every access change from ``old`` to ``new``, by principal, losses first."""
    before, after = _holdings(old), _holdings(new)
    changes = []
    for name in sorted(before.keys() | after.keys()):
        was, now = before.get(name, frozenset()), after.get(name, frozenset())
        changes += [AccessChange(name, p, s, False) for p, s in was - now]
        changes += [AccessChange(name, p, s, True) for p, s in now - was]
    return sorted(changes, key=lambda c: (c.principal, c.gained, c.permission.bit, c.scope))
