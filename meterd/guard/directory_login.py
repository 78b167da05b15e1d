"""Directory login as the guard runs it: the directory asked off the loop, its answer mapped and recorded.

How a directory user is decided (the one-decision-point rule holds): a
directory user is no principal of the policy file, so a login that the
directory accepts and the policy maps adds a
:class:`~meterd.policy.model.DirectoryPrincipal` (the mapped policy groups,
roles named by the directory, a scope, the offline cap) to the policy in
force, and the guard recompiles the table with it.  From then on the
compiled C table decides that principal's requests like anyone else's;
channels never see the difference.  Group membership is read again at each
login (the principal is replaced), the principal leaves the table once it
has no session, and a push that changes groups or roles recompiles it.

Invariants:
    * Lockout counts apply before the directory is asked: a locked name never
      reaches the directory.
    * The directory runs in a bounded pool of worker threads
      (:class:`~meterd.guard.directory_gate.DirectoryGate`); the event loop
      only awaits it, never longer than the login timeout.
    * The offline cache is used only when the directory is unreachable, never
      after a refusal; an entry whose password the directory refuses, or
      whose user it no longer knows, is deleted.
    * Every outcome is recorded with its path (``ldap``, ``radius``,
      ``offline-cache``) and, where one answered or failed, the server and step.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from meterd.directory.backend import DirectoryRefused, DirectoryUnreachable
from meterd.directory.offline import CachedLogin
from meterd.guard.audit import EventType
from meterd.guard.credential_checks import credential_checks
from meterd.guard.directory_gate import DirectoryGate
from meterd.policy.directory import MappingRefusal, is_local, map_identity
from meterd.policy.request import Channel, Outcome

if TYPE_CHECKING:
    from meterd.guard.login import Login as Guard
    from meterd.guard.sessions import Session

log = logging.getLogger(__name__)

#: The paths a login can take, as the log and the metrics name them (a closed set).
PATHS = ("local", "ldap", "radius", "offline-cache", "break-glass")


async def directory_login(
    guard: Guard, gate: DirectoryGate, *, channel: Channel, source: str, name: str, password: str
) -> bool:
    """Log ``name`` in through the directory (the name is no local principal).

    Returns:
        True when a principal for ``name`` is in force; False after a recorded refusal.
    """
    backend = gate.backend.name
    settings = guard.policy.settings
    now = guard.now()
    if guard.lockout.locked(name, channel, now):
        await _failed(
            guard,
            gate,
            channel=channel,
            source=source,
            name=name,
            detail={"reason": "locked", "path": backend},
            outcome="locked",
        )
        return False
    try:
        identity = await gate.ask(name, password)
    except DirectoryRefused as e:
        _reachable(guard, gate, reachable=e.step != "internal")
        if gate.offline is not None and e.step in ("search", "user bind"):
            # No such user: the entry goes; a refused password: it goes if it is the cached one.
            forget = functools.partial(gate.offline.forget, name, password if e.step == "user bind" else None)
            await credential_checks().run(channel, source, forget)
        detail = {"reason": "directory_refused", "path": backend, "server": e.server, "step": e.step}
        outcome = "refused" if e.step != "internal" else "error"
        await _failed(guard, gate, channel=channel, source=source, name=name, detail=detail, outcome=outcome)
        if guard.lockout.failure(
            name, channel, now, settings.login_failure_threshold, settings.login_lockout
        ):
            await guard.locked_out(name, channel, source)
        return False
    except DirectoryUnreachable as e:
        _reachable(guard, gate, reachable=False)
        return await _offline_login(
            guard, gate, channel=channel, source=source, name=name, password=password, error=e
        )
    _reachable(guard, gate, reachable=True)
    mapped = map_identity(
        guard.policy, name, identity.groups, roles=identity.roles, scope=identity.scope, path=identity.backend
    )
    if isinstance(mapped, MappingRefusal):
        outcome = "sod_violation" if mapped.reason == "sod_violation" else "not_mapped"
        detail = {"reason": mapped.reason, "path": backend, "server": identity.server, "why": mapped.message}
        await _failed(guard, gate, channel=channel, source=source, name=name, detail=detail, outcome=outcome)
        return False
    offline = gate.offline
    if offline is not None:
        login = CachedLogin(identity.groups, identity.roles, identity.scope, identity.backend, gate.wall())

        def store() -> bool:
            try:
                offline.store(name, password, login)
            except Exception:  # the cache is a fallback: a full disk must not stop online logins
                log.exception("offline cache not written")
                return False
            return True

        # scrypt: in the credential-check threads, not the directory's (which may be full of stalls).
        await credential_checks().run(channel, source, store)
    guard.lockout.success(name, channel)
    guard.put_directory_principal(mapped, identity.server)
    guard.observer.directory_login(backend, "success")
    return True


async def _offline_login(
    guard: Guard,
    gate: DirectoryGate,
    *,
    channel: Channel,
    source: str,
    name: str,
    password: str,
    error: DirectoryUnreachable,
) -> bool:
    backend = gate.backend.name
    where = {"server": error.server, "step": error.step, "error": str(error)[:300]}
    cached: list[CachedLogin] = []
    offline = gate.offline
    if offline is not None:
        now = gate.wall()

        def check() -> bool:
            found = offline.check(name, password, now)
            cached.extend(() if found is None else (found,))
            return found is not None

        await credential_checks().run(channel, source, check)
    if not cached:
        detail = {"reason": "directory_unreachable", "path": backend, **where}
        await _failed(
            guard, gate, channel=channel, source=source, name=name, detail=detail, outcome="unreachable"
        )
        if gate.offline is not None:
            # A cached entry exists and the password did not match it: that is a guess.
            settings = guard.policy.settings
            if guard.lockout.failure(
                name, channel, guard.now(), settings.login_failure_threshold, settings.login_lockout
            ):
                await guard.locked_out(name, channel, source)
        return False
    login = cached[0]
    mapped = map_identity(
        guard.policy,
        name,
        login.groups,
        roles=login.roles,
        scope=login.scope,
        withheld=gate.settings.offline_cap,
        path="offline-cache",
    )
    if isinstance(mapped, MappingRefusal):
        detail = {"reason": mapped.reason, "path": "offline-cache", "why": mapped.message, **where}
        await _failed(
            guard, gate, channel=channel, source=source, name=name, detail=detail, outcome="not_mapped"
        )
        return False
    guard.lockout.success(name, channel)
    guard.put_directory_principal(mapped, error.server)
    guard.observer.directory_login(backend, "offline")
    await guard.record(
        EventType.ACCESS_DECISION,
        name,
        Outcome.ALLOW,
        channel=channel,
        source=source,
        detail={
            "offline_login": True,
            "path": "offline-cache",
            "cached_at": int(login.at),
            "withheld": ",".join(sorted(p.value for p in gate.settings.offline_cap)),
            **where,
        },
    )
    return True


async def break_glass_allowed(
    guard: Guard, gate: DirectoryGate, *, channel: Channel, source: str, name: str
) -> bool:
    """A break-glass account passes only while the directory is unreachable, and raises an alarm.

    Asked when a session opens, so every way in (password, key, PIN) is covered;
    any other principal passes.
    """
    user = guard.compiled.policy.users.get(name)
    if user is None or not user.break_glass:
        return True
    if await gate.reachable_now():
        await _failed(
            guard,
            gate,
            channel=channel,
            source=source,
            name=name,
            detail={"reason": "break_glass_directory_reachable", "path": "break-glass"},
            outcome=None,
        )
        return False
    return await guard.record(
        EventType.ALARM,
        name,
        Outcome.ALLOW,
        channel=channel,
        source=source,
        detail={"alarm": "break_glass_login", "path": "break-glass", "backend": gate.backend.name},
    )


def login_path(guard: Guard, gate: DirectoryGate, session: Session) -> dict[str, str]:
    """How ``session``'s principal logged in, for its login record; bounds a directory session's life."""
    origin = gate.origin.get(session.principal)
    if origin is not None and session.principal in guard.policy.directory_principals:
        session.expires_at = session.opened_at + gate.settings.session_lifetime
        session.directory = True
        return {"path": origin[0], "server": origin[1]}
    user = guard.compiled.policy.users.get(session.principal)
    return {"path": "break-glass" if user is not None and user.break_glass else "local"}


async def _failed(
    guard: Guard,
    gate: DirectoryGate,
    *,
    channel: Channel,
    source: str,
    name: str,
    detail: Mapping[str, str | int | bool],
    outcome: str | None,
) -> None:
    await guard.record(
        EventType.LOGIN_FAILURE,
        name,
        Outcome.DENY,
        channel=channel,
        source=source,
        detail={k: v for k, v in detail.items() if v != ""},
    )
    guard.observer.login_failure(channel)
    if outcome is not None:
        guard.observer.directory_login(gate.backend.name, outcome)


def _reachable(guard: Guard, gate: DirectoryGate, *, reachable: bool) -> None:
    # The gate keeps the verdict itself (every attempt, probes too); this is the metric.
    guard.observer.directory_reachable(gate.backend.name, reachable)


__all__ = ["PATHS", "DirectoryGate", "break_glass_allowed", "directory_login", "is_local", "login_path"]
