"""The groups async appenders wait on, and settling their futures: the writer's waiting side.

:class:`~meterd.seclog.writer.GroupCommitWriter` puts appenders into
:class:`Group` objects and submits them; each event loop with appenders
keeps its groups, in submission order, in its :class:`LoopWaiters`.  Only
that loop settles its futures (asyncio futures are not thread-safe), when
its eventfd says a sync ended (:func:`settle`: in order, with each record's
seq or its group's error) or when a deadline passes (:func:`expire`).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from meterd.seclog.errors import LogFullError, LogUnavailableError


class Group:
    """Records appended together and submitted to the syncer in one go.

    Waiting is per group, not per record: the syncer makes a submitted group
    durable as a whole, so one seq (``first``) and one error say everything,
    and no object is built per record beyond its future.
    """

    __slots__ = ("deadlines", "error", "first", "futures", "loop", "ordinary", "records", "shared")

    def __init__(self) -> None:
        #: The records' encoded fields (:func:`meterd.seclog.entry.encode_record`).
        self.records: list[bytes] = []
        #: One per record: an async appender's future, None for a blocking appender.
        self.futures: list[asyncio.Future[int] | None] = []
        #: One per record: when the async appender's wait times out (loop time).
        self.deadlines: list[float] = []
        self.first = 0  # seq of records[0], once submitted
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the first loop with futures here
        self.shared = False  # futures of more than one loop
        #: Some record may not use the log's reserve (see
        #: :meth:`~meterd.seclog.writer.GroupCommitWriter.submit`).
        self.ordinary = False

    def owns(self, future: asyncio.Future[int] | None, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether ``future`` is an unsettled one of ``loop``'s (only that loop may settle it)."""
        return future is not None and not future.done() and (not self.shared or future.get_loop() is loop)


class LoopWaiters:
    """The groups one event loop waits on, in submission order, and the eventfd that wakes it."""

    __slots__ = ("eventfd", "flush_scheduled", "groups", "loop", "timer", "timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop, eventfd: int) -> None:
        self.loop = loop
        self.eventfd = eventfd
        self.groups: collections.deque[Group] = collections.deque()
        self.flush_scheduled = False
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0


def copy_error(error: BaseException) -> BaseException:
    """Return an exception to raise in one waiter (shared instances would share tracebacks)."""
    if isinstance(error, LogFullError):
        return LogFullError(str(error))
    if isinstance(error, LogUnavailableError):
        return LogUnavailableError(str(error), reason=error.reason)
    return LogUnavailableError(f"the security log failed: {error}", reason="failed")


def timed_out(timeout: float) -> LogUnavailableError:
    """The error of an async appender whose wait outlasted its timeout."""
    return LogUnavailableError(f"the security log did not confirm within {timeout} s", reason="timeout")


def settle(waiting: LoopWaiters, durable: int, failure: Callable[[], BaseException | None]) -> None:
    """Settle, in order, the futures of ``waiting``'s groups that are durable or failed.

    Args:
        waiting: One loop's groups; call in that loop.
        durable: The last durable seq.
        failure: Asked only if groups are left: why they never will be durable
            (the log failed or closed), or None while they still may be.
    """
    groups = waiting.groups
    loop = waiting.loop
    while groups:
        group = groups[0]
        error = group.error
        if error is None and (not group.first or group.first + len(group.records) - 1 > durable):
            break
        groups.popleft()
        shared = group.shared
        for seq, future in enumerate(group.futures, group.first):
            # group.owns(), inline: this runs once per async append.
            if future is not None and not future.done() and (not shared or future.get_loop() is loop):
                if error is None:
                    future.set_result(seq)
                else:
                    future.set_exception(copy_error(error))
    if not groups:
        return
    fault = failure()
    if fault is not None:
        while groups:
            group = groups.popleft()
            for future in group.futures:
                if group.owns(future, loop):
                    assert future is not None
                    future.set_exception(copy_error(fault))


def expire(waiting: LoopWaiters, timeout: float) -> None:
    """Fail the futures of ``waiting`` whose deadline has passed; rearm the timer for the next.

    A loop callback (``loop.call_at``), in the loop ``waiting`` belongs to.
    """
    waiting.timer = None
    loop = waiting.loop
    now = loop.time()
    nearest: float | None = None
    for group in waiting.groups:
        for future, deadline in zip(group.futures, group.deadlines, strict=True):
            if not group.owns(future, loop):
                continue
            assert future is not None
            if deadline <= now:
                future.set_exception(timed_out(timeout))
            elif nearest is None or deadline < nearest:
                nearest = deadline
    if nearest is not None:
        waiting.timer = loop.call_at(nearest, expire, waiting, timeout)
        waiting.timer_at = nearest
