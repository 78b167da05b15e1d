"""Handlers of the second person's commands: ``approvals``, ``approve ID``, ``reject ID``.

The shell allows them with ``terminal_access``; the guard then decides the
approval itself (someone other than the requester, holding the requested
permission on their own channel).
"""

from __future__ import annotations

from meterd.policy.request import DenyReason
from meterd.shell.context import Context, UsageError
from meterd.shell.terminal import EXIT_DENIED, EXIT_OK, EXIT_USAGE


async def approvals(ctx: Context) -> int:
    """``approvals``: the requests this session could approve (not its own, permission held)."""
    pending = ctx.runtime.guard.approvable(ctx.session)
    await ctx.table(
        ("id", "requester", "permission", "action"),
        [(p.id, p.requester, p.permission.value, p.action) for p in pending],
    )
    return EXIT_OK


def check_request_number(ctx: Context) -> int:
    """Pre-check of ``approve`` and ``reject``; return the request number.

    Raises:
        UsageError: The argument is not a number.
    """
    word = ctx.args[0]
    if not (word.isascii() and word.isdigit()):
        raise UsageError(f"{word!r} is not a request number")
    return int(word)


async def _decide(ctx: Context, approve: bool) -> int:
    number = check_request_number(ctx)
    decision = await ctx.runtime.guard.approve(ctx.session, number, approve=approve)
    if decision.reason is DenyReason.BAD_REQUEST:
        # Nothing to approve (a mistyped number, or decided already): no permission was refused.
        await ctx.line(decision.detail or f"no pending request {number}")
        return EXIT_USAGE
    if not decision.allowed:
        reason = decision.detail or (decision.reason.value if decision.reason else "refused")
        await ctx.line(f"denied: {decision.request.permission.value} ({reason})")
        return EXIT_DENIED
    await ctx.line(f"request {number} {'approved' if approve else 'rejected'}")
    return EXIT_OK


async def approve(ctx: Context) -> int:
    """``approve ID``: approve someone else's dual-control request."""
    return await _decide(ctx, True)


async def reject(ctx: Context) -> int:
    """``reject ID``: reject someone else's dual-control request."""
    return await _decide(ctx, False)
