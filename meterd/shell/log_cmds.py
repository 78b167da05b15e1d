"""Handlers of the ``log`` commands: records are read only through the gated read."""

from __future__ import annotations

from meterd.seclog import EventType, Query
from meterd.seclog.events import BY_EVENT_NAME
from meterd.shell.context import Context, UsageError
from meterd.shell.terminal import EXIT_DENIED, EXIT_OK

DEFAULT_LIMIT = 50
MAX_LIMIT = 10_000


def _query(args: list[str]) -> Query:
    """Parse ``[limit=N] [user=NAME] [event=TYPE]``."""
    limit, users, events = DEFAULT_LIMIT, frozenset[str](), frozenset[EventType]()
    for word in args:
        key, _, value = word.partition("=")
        if key == "limit" and value.isdigit() and 1 <= int(value) <= MAX_LIMIT:
            limit = int(value)
        elif key == "user" and value:
            users = frozenset({value})
        elif key == "event" and value in BY_EVENT_NAME:
            events = frozenset({BY_EVENT_NAME[value]})
        else:
            raise UsageError(f"unexpected {word!r}")
    return Query(principals=users, events=events, limit=limit)


def check_log_show(ctx: Context) -> None:
    """Pre-check of ``log show``: the filter words parse."""
    _query(list(ctx.args))


async def log_show(ctx: Context) -> int:
    """``log show [limit=N] [user=NAME] [event=TYPE]``: the newest records, oldest first."""
    query = _query(list(ctx.args))
    assert ctx.decision is not None  # the shell passes the allow of security_logs_access
    records = await ctx.runtime.guard.read_log(ctx.decision, query)
    await ctx.table(
        ("seq", "time", "event", "principal", "channel", "outcome", "permission", "resource"),
        [
            (
                r.seq,
                r.time,
                r.event.value,
                r.principal,
                r.channel.value,
                r.outcome.value,
                r.permission or "-",
                r.resource or "-",
            )
            for r in records
        ],
    )
    return EXIT_OK


async def log_checkpoint(ctx: Context) -> int:
    """``log checkpoint``: seal a checkpoint of the log's head now (before taking a copy off the meter)."""
    seq = await ctx.runtime.guard.checkpoint_log()
    await ctx.fields([("checkpoint_seq", seq), ("head_seq", seq - 1)])
    return EXIT_OK


async def log_verify(ctx: Context) -> int:
    """``log verify``: check the chain of the whole log (MACs need the auditor's key, off the meter)."""
    report = await ctx.runtime.guard.verify_log()
    pairs: list[tuple[str, object]] = [
        ("records", report.records),
        ("first_seq", report.first_seq),
        ("last_seq", report.last_seq),
        ("checkpoints", report.checkpoints),
        ("mac_checked", report.mac_checked),
        ("status", "ok" if report.ok else "damaged"),
    ]
    if report.finding is not None:
        pairs += [
            ("finding", report.finding.problem.value),
            ("finding_seq", report.finding.seq),
            ("message", report.finding.message),
        ]
    await ctx.fields(pairs)
    return EXIT_OK if report.ok else EXIT_DENIED


def _acknowledged_seq(ctx: Context) -> int:
    if not ctx.args[0].isdigit() or int(ctx.args[0]) == 0:
        raise UsageError(f"{ctx.args[0]!r} is not a record number")
    return int(ctx.args[0])


def check_log_acknowledge(ctx: Context) -> None:
    """Pre-check of ``log acknowledge``: SEQ is a record number of the log."""
    up_to = _acknowledged_seq(ctx)
    head = ctx.runtime.guard.log_status().head_seq
    if up_to > head:
        raise UsageError(f"seq {up_to} is not in the log (its head is {head})")


async def log_acknowledge(ctx: Context) -> int:
    """``log acknowledge SEQ``: the records up to SEQ are safely off the meter (the auditor holds a copy).

    Under ``drop_exported`` a full log may then drop them, and recorded actions resume.
    """
    up_to = _acknowledged_seq(ctx)
    assert ctx.decision is not None  # the shell passes the allow of security_logs_access
    try:
        mark = await ctx.runtime.guard.acknowledge_log(ctx.session, ctx.decision, up_to)
    except ValueError as e:
        raise UsageError(str(e)) from e
    await ctx.fields([("acknowledged_to", mark)])
    return EXIT_OK
