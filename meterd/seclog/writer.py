"""Group commit: appenders write in groups, a native syncer makes each group durable.

Appenders put a validated entry into the pending group.  Whoever flushes takes
the whole pending group and submits it through the store to the syncer
(:mod:`meterd.seclog.syncer`), whose native thread seals it, writes it and
``fdatasync``-s: groups submitted while a sync runs share the next one, which
is what makes throughput under load far above one sync per record.

Who flushes:
    * A blocking appender (:meth:`GroupCommitWriter.append`) flushes itself,
      then waits in the syncer without the interpreter lock.
    * In an event loop, the first append of a loop iteration schedules one
      flush after the iteration, so the appenders that ran together are
      written together, and a group reaching :data:`GROUP_RECORDS` is
      flushed at once; the sync runs while the loop goes on.

Async appenders wait on futures of their own loop, resolved when the eventfd
the syncer writes after each sync becomes readable.  Neither the loop nor the
syncer ever waits for the other: a Python writer thread would queue for the
interpreter lock behind the loop's appenders after every sync.

Failure is loud and prompt: a failed write or sync fails its group, every
written group not yet durable and every later append (the store's state is
then unknown); a full log fails only the group refused; an append that waits
longer than its timeout raises instead of hanging.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
from collections.abc import Callable

from meterd.seclog.entry import Entry
from meterd.seclog.errors import LogFullError, LogUnavailableError
from meterd.seclog.store import SegmentStore

_log = logging.getLogger(__name__)
#: An event loop submits its pending group at the end of each iteration, or
#: once it holds this many records: appenders woken together by one sync run
#: in one iteration, and without a cap the disk would idle until the last of
#: them had appended; with it, the next sync starts on the first part while
#: the rest are prepared, so the disk and the loop work at the same time.
GROUP_RECORDS = 32


class _Waiter:
    """One appender's record between its append and its durability."""

    __slots__ = ("deadline", "error", "future", "seq")

    def __init__(self, future: asyncio.Future[int] | None, deadline: float) -> None:
        self.seq = 0  # 0 until written
        self.error: BaseException | None = None
        self.future = future
        self.deadline = deadline


class _LoopWaiters:
    """The async waiters of one event loop, in append order, and the eventfd that wakes them."""

    __slots__ = ("eventfd", "flush_scheduled", "loop", "timer", "timer_at", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop, eventfd: int) -> None:
        self.loop = loop
        self.eventfd = eventfd
        self.waiters: collections.deque[_Waiter] = collections.deque()
        self.flush_scheduled = False
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0


def _copy_error(error: BaseException) -> BaseException:
    """Return an exception to raise in one waiter (shared instances would share tracebacks)."""
    if isinstance(error, LogFullError):
        return LogFullError(str(error))
    if isinstance(error, LogUnavailableError):
        return LogUnavailableError(str(error), reason=error.reason)
    return LogUnavailableError(f"the security log failed: {error}", reason="failed")


def _timed_out(timeout: float) -> LogUnavailableError:
    return LogUnavailableError(f"the security log did not confirm within {timeout} s", reason="timeout")


class GroupCommitWriter:
    """The appending side of an open log.

    Args:
        store: The open store; only this writer touches it from now on, and
            closes it.
        max_pending: Bound on records waiting to be written or synced.
    """

    def __init__(self, store: SegmentStore, max_pending: int) -> None:
        self._store = store
        self._syncer = store.syncer
        self._max_pending = max_pending
        # The queue lock guards the pending group and is held only for list
        # operations; the flush lock serialises writers and is held across I/O.
        self._queue_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._entries: list[Entry] = []
        self._waiters: list[_Waiter] = []
        self._backlog = 0  # written but not durable, as of the last flush
        self._closing = False
        self._closed = False
        self._failure: BaseException | None = None
        self._loops: dict[asyncio.AbstractEventLoop, _LoopWaiters] = {}
        self._loops_lock = threading.Lock()
        #: Called with each sync's duration in seconds, in the thread or loop of an
        #: appender woken by a sync; it must be cheap, thread-safe and must not
        #: raise (the flush-latency metric).
        self.on_commit: Callable[[float], None] | None = None

    # -- appending --------------------------------------------------------

    def _enqueue(self, entry: Entry, waiter: _Waiter) -> None:
        with self._queue_lock:
            if self._failure is not None:
                raise LogUnavailableError(f"the security log failed: {self._failure}", reason="failed")
            if self._closing:
                raise LogUnavailableError("the security log is closed", reason="closed")
            if len(self._entries) + self._backlog >= self._max_pending:
                raise LogUnavailableError(
                    "too many records waiting for the security log", reason="overloaded"
                )
            self._entries.append(entry)
            self._waiters.append(waiter)

    def append(self, entry: Entry, timeout: float) -> int:
        """Write ``entry`` and wait until it is durable; return its seq.

        Raises:
            LogUnavailableError: Closed, failed, overloaded, full, or not durable
                within ``timeout`` seconds.
        """
        waiter = _Waiter(None, 0.0)
        self._enqueue(entry, waiter)
        # Whoever held the flush lock before took this entry along, or this call does.
        self._flush()
        if waiter.error is not None:
            raise _copy_error(waiter.error) from waiter.error
        self._syncer.wait(waiter.seq, timeout)
        self._report_syncs()
        return waiter.seq

    def submit(self, entry: Entry, timeout: float) -> asyncio.Future[int]:
        """Queue ``entry`` from a running event loop; return a future of its seq.

        A plain function returning the future (rather than a coroutine) keeps
        one coroutine frame off the hot path.  The future fails with
        :class:`LogUnavailableError` like :meth:`append` does.

        Raises:
            LogUnavailableError: Closed, failed or overloaded (at once).
        """
        loop = asyncio.get_running_loop()
        group = self._loops.get(loop)
        if group is None:
            # Subscribed before the entry is queued, so its sync cannot go unnoticed.
            group = self._subscribe(loop)
        future: asyncio.Future[int] = loop.create_future()
        deadline = loop.time() + timeout
        waiter = _Waiter(future, deadline)
        self._enqueue(entry, waiter)
        group.waiters.append(waiter)
        if len(self._entries) >= GROUP_RECORDS:
            self._flush()
        elif not group.flush_scheduled:
            group.flush_scheduled = True
            loop.call_soon(self._flush_from_loop, group)
        if group.timer is None or deadline < group.timer_at:
            if group.timer is not None:
                group.timer.cancel()
            group.timer = loop.call_at(deadline, self._expire, group, timeout)
            group.timer_at = deadline
        return future

    def request_checkpoint(self, timeout: float) -> None:
        """Write a checkpoint record now (with whatever else is queued) and wait for it."""
        with self._queue_lock:
            if self._failure is not None or self._closing:
                raise LogUnavailableError("the security log is not writable", reason="closed")
        error = self._flush(checkpoint=True)
        if error is not None:
            raise _copy_error(error) from error
        self._syncer.wait(self._store.seq, timeout)

    # -- writing ----------------------------------------------------------

    def _flush_from_loop(self, group: _LoopWaiters) -> None:
        group.flush_scheduled = False
        self._flush()

    def _flush(self, *, checkpoint: bool = False) -> BaseException | None:
        """Submit the pending group (the syncer seals, writes and syncs it); return its error, if any."""
        with self._flush_lock:
            with self._queue_lock:
                entries, waiters = self._entries, self._waiters
                if not entries and not checkpoint:
                    return None
                self._entries, self._waiters = [], []
            error: BaseException | None = None
            try:
                if self._failure is not None:
                    raise self._failure
                first = self._store.write(entries, checkpoint=checkpoint)
            except LogFullError as e:
                error = e
            except Exception as e:  # any other fault leaves the store in an unknown state: fail for good
                self._fail(e)
                error = e
            else:
                for seq, waiter in enumerate(waiters, first):
                    waiter.seq = seq
                durable = self._syncer.durable
                self._backlog = self._store.seq - durable
                if durable >= first:
                    # Synced before the seqs were set here: a loop woken meanwhile
                    # found nothing to resolve and must look again.
                    self._syncer.notify()
            if error is not None:
                for waiter in waiters:
                    waiter.error = error
                self._syncer.notify()  # the loops' waiters of this group learn it now
            return error

    def _fail(self, error: BaseException) -> None:
        _log.error("security log write failed: %s", error)
        if self._failure is None:
            self._failure = error

    # -- waking async appenders --------------------------------------------

    def _subscribe(self, loop: asyncio.AbstractEventLoop) -> _LoopWaiters:
        with self._loops_lock:
            for old in [g for g in self._loops.values() if g.loop.is_closed()]:
                # A closed loop's selector is gone with it: only our side is left to release.
                self._syncer.unsubscribe(old.eventfd)
                os.close(old.eventfd)
                del self._loops[old.loop]
            eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            try:
                self._syncer.subscribe(eventfd)
            except BaseException:
                os.close(eventfd)
                raise
            group = self._loops[loop] = _LoopWaiters(loop, eventfd)
        loop.add_reader(eventfd, self._on_sync, group)
        return group

    def _on_sync(self, group: _LoopWaiters) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(group.eventfd)
        self._resolve(group)
        self._report_syncs()

    def _report_syncs(self) -> None:
        """Hand the durations of the syncs made since the last report to ``on_commit``."""
        if self.on_commit is not None:
            for seconds in self._syncer.latencies():
                self.on_commit(seconds)

    def _resolve(self, group: _LoopWaiters) -> None:
        """Resolve, in order, the waiters whose records are durable or whose group failed."""
        durable = self._syncer.durable
        waiters = group.waiters
        while waiters:
            waiter = waiters[0]
            future = waiter.future
            assert future is not None
            if waiter.error is None:
                if not waiter.seq or waiter.seq > durable:
                    break
                waiters.popleft()
                if not future.done():  # done: timed out or cancelled
                    future.set_result(waiter.seq)
            else:
                waiters.popleft()
                if not future.done():
                    future.set_exception(_copy_error(waiter.error))
        if not waiters:
            return
        failure = self.failure
        if failure is None and self._closed:
            failure = LogUnavailableError("the security log is closed", reason="closed")
        if failure is not None:
            while waiters:
                future = waiters.popleft().future
                if future is not None and not future.done():
                    future.set_exception(_copy_error(failure))

    def _expire(self, group: _LoopWaiters, timeout: float) -> None:
        group.timer = None
        now = group.loop.time()
        nearest: float | None = None
        for waiter in group.waiters:
            future = waiter.future
            if future is None or future.done():
                continue
            if waiter.deadline <= now:
                future.set_exception(_timed_out(timeout))
            elif nearest is None or waiter.deadline < nearest:
                nearest = waiter.deadline
        if nearest is not None:
            group.timer = group.loop.call_at(nearest, self._expire, group, timeout)
            group.timer_at = nearest

    def _retire(self, group: _LoopWaiters) -> None:
        """In the group's loop, after the log closed: settle every waiter and release the eventfd."""
        self._resolve(group)
        if group.timer is not None:
            group.timer.cancel()
            group.timer = None
        group.loop.remove_reader(group.eventfd)
        os.close(group.eventfd)

    # -- closing ----------------------------------------------------------

    def close(self) -> None:
        """Write what is queued and a final checkpoint, sync it, stop the syncer, close the store."""
        with self._queue_lock:
            if self._closing:
                return
            self._closing = True
        self._flush(checkpoint=self._failure is None)
        failure = self._store.close()
        if failure is not None:
            self._fail(failure)
        self._closed = True
        with self._loops_lock:
            groups, self._loops = list(self._loops.values()), {}
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for group in groups:
            if group.loop.is_closed():
                os.close(group.eventfd)
            elif running is group.loop:
                self._retire(group)
            else:
                # Not this thread's loop: its eventfd is closed there, once it has run the waiters.
                with contextlib.suppress(RuntimeError):
                    group.loop.call_soon_threadsafe(self._retire, group)

    @property
    def failure(self) -> BaseException | None:
        """The fault that stopped the log, if any."""
        return self._failure or self._syncer.failure()
