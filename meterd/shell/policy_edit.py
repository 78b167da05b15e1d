"""Changing the policy from the shell: a new :class:`Policy`, checked, then put in force.

Every edit builds a new immutable policy (``dataclasses.replace``) with the
version raised by one and refuses it if lint finds an error (separation of
duties broken, nobody left to manage users).  Then:

* with the daemon's policy service (``Runtime.policies``), the service puts
  it in force and persists it (``PolicyCommands.edit``); a refusal there
  leaves the old policy in force;
* without one (tools, tests), it is compiled and installed in the guard,
  held until restart, and recorded as ``policy_change``.

Credentials a changed policy carries (``user add``) seed only users the meter
holds none for, as a push does; ``passwd`` and ``user reset-password`` change
the credentials alone (:func:`change_credentials`), never the policy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Callable

from meterd.errors import MeterdError
from meterd.guard import Guard, Session
from meterd.policy.compile import compile_policy
from meterd.policy.credentials import UserCredentials, seed, without_credentials
from meterd.policy.lint import Severity, lint_policy
from meterd.policy.model import Policy, User, frozen_map
from meterd.policy.request import Outcome
from meterd.runtime import Runtime

_locks: weakref.WeakKeyDictionary[Guard, asyncio.Lock] = weakref.WeakKeyDictionary()


class PolicyEditError(MeterdError):
    """A policy change was refused (bad input, lint error, the policy service said no)."""


def _lock(guard: Guard) -> asyncio.Lock:
    return _locks.setdefault(guard, asyncio.Lock())


async def change_credentials(
    runtime: Runtime,
    session: Session,
    name: str,
    change: Callable[[UserCredentials], UserCredentials],
    what: str,
) -> None:
    """Change the credentials of user ``name`` in the credential store and put them in force.

    Args:
        runtime: The daemon's shared parts (its guard and policy service).
        session: Who changes them (for the record).
        change: Pure function from the user's credentials to the new ones.
        what: Short name of the change for the record (``password_change``).
        name: The user concerned.

    Raises:
        PolicyEditError: No such user, or the store could not be written (nothing changed).
    """
    guard = runtime.guard
    async with _lock(guard):
        if name not in guard.policy.users:
            raise PolicyEditError(f"no user {name!r}")
        current = guard.credentials
        new = current.with_user(name, change(current.of(name)))
        if runtime.policies is not None:
            status, output = await runtime.policies.set_credentials(guard, session, new, what)
            if status != 0:
                raise PolicyEditError(output.strip() or "the credentials were not changed")
            return
        guard.install_credentials(new)
        await guard.credentials_changed(session, {"how": what, "store": "memory", "users": name})


def replace_user(policy: Policy, user: User) -> Policy:
    """Return ``policy`` with ``user`` added or replaced."""
    return dataclasses.replace(policy, users=frozen_map({**policy.users, user.name: user}))


def remove_user(policy: Policy, name: str) -> Policy:
    """Return ``policy`` without user ``name``, also dropped from every group."""
    users = {k: v for k, v in policy.users.items() if k != name}
    groups = {
        g.name: dataclasses.replace(g, members=tuple(m for m in g.members if m != name))
        for g in policy.groups.values()
    }
    return dataclasses.replace(policy, users=frozen_map(users), groups=frozen_map(groups))


async def apply_policy_change(
    runtime: Runtime, session: Session, change: Callable[[Policy], Policy], what: str, subject: str
) -> str:
    """Apply ``change`` to the policy in force and put the result in force.

    Args:
        runtime: The daemon's shared parts (its guard and policy service).
        session: Who changes it (for the record).
        change: Pure function from the current policy to the new one.
        what: Short name of the change for the record (``user_add``).
        subject: The user concerned.

    Returns:
        What the policy service said (empty without one).

    Raises:
        PolicyEditError: The change is refused; the old policy stays in force.
    """
    guard = runtime.guard
    async with _lock(guard):
        current = guard.policy
        new = dataclasses.replace(change(current), version=current.version + 1)
        errors = [f for f in lint_policy(new) if f.severity is Severity.ERROR]
        if errors:
            raise PolicyEditError(errors[0].message)
        if runtime.policies is not None:
            status, output = await runtime.policies.edit(guard, session, new, what)
            if status != 0:
                raise PolicyEditError(output.strip() or "the policy service refused the change")
            return output
        try:
            compiled = compile_policy(without_credentials(new))
        except MeterdError as e:
            raise PolicyEditError(f"policy not changed: {e}") from e
        guard.install_credentials(seed(guard.credentials, new))
        guard.install_policy(compiled)
        await guard.policy_changed(
            session, Outcome.ALLOW, {"change": what, "user": subject, "version": new.version}
        )
        return ""
