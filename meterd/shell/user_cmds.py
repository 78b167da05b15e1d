"""Handlers of ``passwd`` and ``user ...``: edits through :mod:`meterd.shell.policy_edit`.

``passwd``, ``user reset-password``, ``user reset-pin`` and ``user key``
change the meter's credential store only; ``user add|remove|roles`` change
the policy (a new user's password and key are its initial credentials).

The ``check_*`` functions are the commands' pre-checks (run before the guard
is asked, only for a holder of ``user_management``): a user that does not
exist, a role that does not, a name or key the policy would refuse.
``user unlock`` has none: a lockout is kept by login name, and a name from a
directory backend need not be a user of the policy.
"""

from __future__ import annotations

import asyncio
import dataclasses

from meterd.credentials import hash_secret, password_problems
from meterd.guard import Password
from meterd.policy.credentials import UserCredentials
from meterd.policy.keys import check_authorized_key
from meterd.policy.loader import NAME_PATTERN
from meterd.policy.model import ANONYMOUS, Policy, User
from meterd.shell.context import Context, UsageError
from meterd.shell.policy_edit import (
    PolicyEditError,
    apply_policy_change,
    change_credentials,
    remove_user,
    replace_user,
)
from meterd.shell.terminal import EXIT_DENIED, EXIT_OK


async def _new_password(ctx: Context) -> str | None:
    """Prompt twice for a new password and check the policy's rules; None if refused."""
    first = await ctx.terminal.read_line("new password: ", echo=False)
    if first is None:
        return None
    return await _confirm(ctx, first)


def _user(policy: Policy, name: str) -> User:
    user = policy.users.get(name)
    if user is None:
        raise PolicyEditError(f"no user {name!r}")
    return user


async def passwd(ctx: Context) -> int:
    """``passwd``: change one's own password (the current one is checked like a login)."""
    guard, session = ctx.runtime.guard, ctx.session
    current = await ctx.terminal.read_line("current password: ", echo=False)
    if current is None:
        return EXIT_DENIED
    if not await guard.authenticate(session.channel, session.source, session.principal, Password(current)):
        await ctx.line("error: current password is wrong")
        return EXIT_DENIED
    new = await _new_password(ctx)
    if new is None:
        return EXIT_DENIED
    hashed = await asyncio.to_thread(hash_secret, new)
    name = session.principal
    await change_credentials(
        ctx.runtime, session, name, lambda c: dataclasses.replace(c, password_hash=hashed), "password_change"
    )
    await ctx.line("password changed")
    return EXIT_OK


async def user_list(ctx: Context) -> int:
    """``user list``."""
    policy, credentials = ctx.runtime.guard.policy, ctx.runtime.guard.credentials
    rows = []
    for name, user in sorted(policy.users.items()):
        group_roles = [r for g in policy.groups_of(name) for r in g.roles]
        roles = ",".join(dict.fromkeys([*user.roles, *group_roles])) or "-"
        held = credentials.of(name)
        rows.append((name, roles, user.enabled, held.password_hash is not None, len(held.ssh_keys)))
    await ctx.table(("user", "roles", "enabled", "password", "keys"), rows)
    return EXIT_OK


def _roles(policy: Policy, text: str) -> tuple[str, ...]:
    roles = tuple(r for r in text.split(",") if r)
    for role in roles:
        if role not in policy.roles:
            raise PolicyEditError(f"no role {role!r}")
    if len(set(roles)) != len(roles):
        raise PolicyEditError("a role is listed twice")
    return roles


def _new_user(ctx: Context) -> tuple[str, str, str]:
    """Check ``user add``'s arguments against the policy in force; return name, roles, key."""
    name, roles_text, key_words = ctx.args[0], ctx.args[1], ctx.args[2:]
    # The rule the policy loader applies, so a stored policy always loads again.
    if not NAME_PATTERN.fullmatch(name) or name == ANONYMOUS:
        raise UsageError(f'bad user name {name!r}: lower case letters, digits, "_", "-" or "."')
    key = " ".join(key_words)
    if key_words:
        problem = check_authorized_key(key)
        if problem:
            raise UsageError(problem)
    policy = ctx.runtime.guard.policy
    if name in policy.users or name in policy.applications:
        raise PolicyEditError(f"{name!r} already exists")
    _roles(policy, roles_text)
    return name, roles_text, key


def check_user_add(ctx: Context) -> None:
    """Pre-check of ``user add``: a new, well-formed name, existing roles, a well-formed key."""
    _new_user(ctx)


def check_user(ctx: Context) -> None:
    """Pre-check of ``user remove|roles|reset-password``: the user exists (and the roles do)."""
    policy = ctx.runtime.guard.policy
    _user(policy, ctx.args[0])
    if len(ctx.args) > 1:
        _roles(policy, ctx.args[1])


async def user_add(ctx: Context) -> int:
    """``user add NAME ROLE[,ROLE...] [KEYTYPE KEYDATA]``: prompts for a password (blank: none)."""
    name, roles_text, key = _new_user(ctx)
    hashed = None
    first = await ctx.terminal.read_line("new password (blank for key only): ", echo=False)
    if first:
        new = await _confirm(ctx, first)
        if new is None:
            return EXIT_DENIED
        hashed = await asyncio.to_thread(hash_secret, new)
    elif not key:
        raise PolicyEditError("a user needs a password or an SSH key")
    user = User(name=name, roles=(), password_hash=hashed, ssh_keys=(key,) if key else ())

    def change(p: Policy) -> Policy:
        if name in p.users or name in p.applications:
            raise PolicyEditError(f"{name!r} already exists")
        return replace_user(p, dataclasses.replace(user, roles=_roles(p, roles_text)))

    await apply_policy_change(ctx.runtime, ctx.session, change, "user_add", name)
    await ctx.line(f"user {name} added")
    return EXIT_OK


async def _confirm(ctx: Context, first: str) -> str | None:
    """Prompt for ``first`` again and check the policy's rules; None if refused."""
    second = await ctx.terminal.read_line("repeat new password: ", echo=False)
    if second is None:
        return None
    if second != first:
        await ctx.line("error: the passwords differ")
        return None
    rules = ctx.runtime.guard.policy.settings.password
    problems = password_problems(first, rules.min_length, rules.min_character_classes)
    if problems:
        await ctx.line("error: password " + "; ".join(problems))
        return None
    return first


async def user_remove(ctx: Context) -> int:
    """``user remove NAME``: the user's open sessions end at once."""
    name = ctx.args[0]
    guard = ctx.runtime.guard

    def change(p: Policy) -> Policy:
        _user(p, name)
        return remove_user(p, name)

    await apply_policy_change(ctx.runtime, ctx.session, change, "user_remove", name)
    for session in list(guard.sessions_of(name)):
        if session is not ctx.session:
            await guard.close_session(session, reason="user removed")
    await ctx.line(f"user {name} removed")
    return EXIT_OK


async def user_roles(ctx: Context) -> int:
    """``user roles NAME ROLE[,ROLE...]``: replace the user's direct roles."""
    name, roles_text = ctx.args[0], ctx.args[1]

    def change(p: Policy) -> Policy:
        return replace_user(p, dataclasses.replace(_user(p, name), roles=_roles(p, roles_text)))

    await apply_policy_change(ctx.runtime, ctx.session, change, "user_roles", name)
    await ctx.line(f"user {name} roles: {roles_text}")
    return EXIT_OK


async def user_unlock(ctx: Context) -> int:
    """``user unlock NAME``: clear a login lockout."""
    name = ctx.args[0]
    was_locked = ctx.runtime.guard.unlock(name)
    await ctx.line(f"user {name} unlocked" if was_locked else f"user {name} was not locked")
    return EXIT_OK


async def user_reset_password(ctx: Context) -> int:
    """``user reset-password NAME``: set another user's password."""
    name = ctx.args[0]
    guard = ctx.runtime.guard
    _user(guard.policy, name)
    new = await _new_password(ctx)
    if new is None:
        return EXIT_DENIED
    hashed = await asyncio.to_thread(hash_secret, new)
    await change_credentials(
        ctx.runtime,
        ctx.session,
        name,
        lambda c: dataclasses.replace(c, password_hash=hashed),
        "password_reset",
    )
    await ctx.line(f"password of {name} reset")
    return EXIT_OK


def _key_change(ctx: Context) -> tuple[str, str, str]:
    """Check ``user key``'s arguments; return name, action and the key line."""
    name, action, key = ctx.args[0], ctx.args[1], " ".join(ctx.args[2:])
    if action not in ("add", "remove"):
        raise UsageError(f'expected "add" or "remove", not {action!r}')
    problem = check_authorized_key(key)
    if problem:
        raise UsageError(problem)
    return name, action, key


def _same_key(a: str, b: str) -> bool:
    """Two key lines name the same key if type and blob agree (the comment does not count)."""
    return a.split()[:2] == b.split()[:2]


def check_user_key(ctx: Context) -> None:
    """Pre-check of ``user key``: the user exists, the action and the key are well formed."""
    name, _, _ = _key_change(ctx)
    _user(ctx.runtime.guard.policy, name)


async def user_key(ctx: Context) -> int:
    """``user key NAME add|remove KEYTYPE KEYDATA``: change a user's SSH keys in the credential store."""
    name, action, key = _key_change(ctx)
    held = ctx.runtime.guard.credentials.of(name).ssh_keys
    listed = any(_same_key(key, k) for k in held)
    if action == "add" and listed:
        raise PolicyEditError(f"{name} already has this key")
    if action == "remove" and not listed:
        raise PolicyEditError(f"{name} has no such key")

    def change(c: UserCredentials) -> UserCredentials:
        keys = tuple(k for k in c.ssh_keys if not _same_key(key, k))
        return dataclasses.replace(c, ssh_keys=(*keys, key) if action == "add" else keys)

    await change_credentials(ctx.runtime, ctx.session, name, change, f"key_{action}")
    await ctx.line(f"key {'added to' if action == 'add' else 'removed from'} {name}")
    return EXIT_OK


#: A front-panel PIN: digits only, as the panel's keypad types them.
PIN_LENGTHS = range(6, 13)


async def user_reset_pin(ctx: Context) -> int:
    """``user reset-pin NAME``: set another user's front-panel PIN (6 to 12 digits)."""
    name = ctx.args[0]
    _user(ctx.runtime.guard.policy, name)
    first = await ctx.terminal.read_line("new PIN: ", echo=False)
    if first is None:
        return EXIT_DENIED
    second = await ctx.terminal.read_line("repeat new PIN: ", echo=False)
    if second != first:
        await ctx.line("error: the PINs differ")
        return EXIT_DENIED
    if not first.isascii() or not first.isdigit() or len(first) not in PIN_LENGTHS:
        await ctx.line(f"error: a PIN is {PIN_LENGTHS.start} to {PIN_LENGTHS.stop - 1} digits")
        return EXIT_DENIED
    hashed = await asyncio.to_thread(hash_secret, first)
    await change_credentials(
        ctx.runtime, ctx.session, name, lambda c: dataclasses.replace(c, pin_hash=hashed), "pin_reset"
    )
    await ctx.line(f"PIN of {name} reset")
    return EXIT_OK
