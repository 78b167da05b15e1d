"""The session's own commands: who am I, and leaving."""

from __future__ import annotations

from meterd.policy.grants import grants_of
from meterd.policy.model import Policy
from meterd.shell.context import Context
from meterd.shell.terminal import EXIT_OK


def roles_of(policy: Policy, name: str) -> tuple[str, ...]:
    """Return a principal's roles, direct ones first, then those of its groups (directory users' too)."""
    return tuple(dict.fromkeys(grant.role for grant in grants_of(policy, name)))


async def whoami(ctx: Context) -> int:
    """Show the session's user, channel, roles and permissions."""
    policy = ctx.runtime.guard.policy
    granted = ctx.runtime.guard.permitted(ctx.session)
    await ctx.fields(
        [
            ("user", ctx.session.principal),
            ("channel", ctx.session.channel.value),
            ("roles", ",".join(roles_of(policy, ctx.session.principal)) or None),
            ("permissions", ",".join(sorted(p.value for p in granted)) or None),
        ]
    )
    return EXIT_OK


async def exit_session(ctx: Context) -> int:
    """End the session (the shell stops reading after it)."""
    return EXIT_OK
