"""Group commit: appenders write in groups, a native syncer makes each group durable.

Appenders put a validated record (its encoded fields) into the pending
group.  Whoever flushes takes the whole pending group and submits it to the
store (the pipeline behind it is described in :mod:`meterd.seclog`): groups
submitted while a sync runs share the next one, which is what makes
throughput under load far above one sync per record.

Async appenders wait per group, not per record (:class:`~meterd.seclog.waiters.Group`):
one seq and one error settle every future of a group, in order.

Who flushes:
    * A blocking appender (:meth:`GroupCommitWriter.append`) flushes itself,
      then waits in the syncer without the interpreter lock.
    * In an event loop, the first append of a loop iteration schedules one
      flush after the iteration, so the appenders that ran together are
      written together, and a group reaching :data:`GROUP_RECORDS` is
      flushed at once; the sync runs while the loop goes on.

Their futures belong to their own loop and are settled when the eventfd
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
import contextlib
import logging
import os
import threading
from collections.abc import Callable

from meterd.seclog.entry import Entry
from meterd.seclog.errors import LogFullError, LogUnavailableError
from meterd.seclog.store import SegmentStore
from meterd.seclog.waiters import Group, LoopWaiters, copy_error, expire, settle

_log = logging.getLogger(__name__)
#: An event loop submits its pending group at the end of each iteration, or
#: once it holds this many records: appenders woken together by one sync run
#: in one iteration, and without a cap the disk would idle until the last of
#: them had appended; with it, the next sync starts on the first part while
#: the rest are prepared, so the disk and the loop work at the same time.
GROUP_RECORDS = 32


class GroupCommitWriter:
    """The appending side of an open log.

    Args:
        store: The open store; only this writer touches it from now on, and
            closes it.
        max_pending: Bound on records waiting to be written or synced.
    """

    def __init__(self, store: SegmentStore, max_pending: int) -> None:
        self._store = store
        self._max_pending = max_pending
        # The queue lock guards the pending group and is held only for list
        # operations; the flush lock serialises writers and is held across I/O.
        self._queue_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._group = Group()  # the pending group
        self._backlog = 0  # written but not durable, as of the last flush
        self._closing = False
        self._closed = False
        self._failure: BaseException | None = None
        #: True once a write or sync has failed (for good): a plain attribute, cheap to
        #: read per request.  Set here, or by the loop a failed sync wakes.
        self.failed = False
        self._loops: dict[asyncio.AbstractEventLoop, LoopWaiters] = {}
        self._loops_lock = threading.Lock()
        #: Called with each sync's duration in seconds, in the thread or loop of an
        #: appender woken by a sync; it must be cheap, thread-safe and must not
        #: raise (the flush-latency metric).
        self.on_commit: Callable[[float], None] | None = None

    # -- appending --------------------------------------------------------

    def _refuse(self) -> LogUnavailableError | None:
        """Why an append must fail at once, if it must (call with the queue lock held)."""
        if self._failure is not None:
            return LogUnavailableError(f"the security log failed: {self._failure}", reason="failed")
        if self._closing:
            return LogUnavailableError("the security log is closed", reason="closed")
        if len(self._group.records) + self._backlog >= self._max_pending:
            return LogUnavailableError("too many records waiting for the security log", reason="overloaded")
        return None

    def append(self, entry: Entry, timeout: float, *, reserve: bool = False) -> int:
        """Write ``entry`` and wait until it is durable; return its seq (``reserve``: see :meth:`submit`).

        Raises:
            LogUnavailableError: Closed, failed, overloaded, full, or not durable
                within ``timeout`` seconds.
        """
        with self._queue_lock:
            refusal = self._refuse()
            if refusal is not None:
                raise refusal
            group = self._group
            index = len(group.records)
            group.records.append(entry.fields)
            group.futures.append(None)
            group.deadlines.append(0.0)
            if not reserve:
                group.ordinary = True
        # Whoever held the flush lock before took this entry along, or this call does.
        self._flush()
        if group.error is not None:
            raise copy_error(group.error) from group.error
        seq = group.first + index
        self._store.wait(seq, timeout)
        self._report_syncs()
        return seq

    def submit(self, record: bytes, timeout: float, reserve: bool = False) -> asyncio.Future[int]:
        """Queue a record's encoded fields from a running event loop; return a future of its seq.

        ``reserve`` lets the record use the room a full log keeps for its own
        records (the caller decides: an auditor reading or acknowledging the
        log); a group with any other record may not.

        A plain function returning the future (rather than a coroutine) keeps
        one coroutine frame off the hot path.  The future fails with
        :class:`LogUnavailableError` like :meth:`append` does.

        Raises:
            LogUnavailableError: Closed, failed or overloaded (at once).
        """
        loop = asyncio.get_running_loop()
        waiting = self._loops.get(loop)
        if waiting is None:
            # Subscribed before the entry is queued, so its sync cannot go unnoticed.
            waiting = self._subscribe(loop)
        future: asyncio.Future[int] = loop.create_future()
        deadline = loop.time() + timeout
        with self._queue_lock:
            group = self._group
            pending = len(group.records) + 1
            # The refusal test inline: _refuse() says why, off the hot path.
            if self._failure is not None or self._closing or pending + self._backlog > self._max_pending:
                refusal = self._refuse()
                if refusal is not None:
                    raise refusal
            group.records.append(record)
            group.futures.append(future)
            group.deadlines.append(deadline)
            if not reserve:
                group.ordinary = True
            if group.loop is not loop:
                if group.loop is None:
                    group.loop = loop
                else:
                    group.shared = True
        groups = waiting.groups
        if not groups or groups[-1] is not group:
            groups.append(group)
        if pending >= GROUP_RECORDS:
            self._flush()
        elif not waiting.flush_scheduled:
            waiting.flush_scheduled = True
            loop.call_soon(self._flush_from_loop, waiting)
        if waiting.timer is None or deadline < waiting.timer_at:
            if waiting.timer is not None:
                waiting.timer.cancel()
            waiting.timer = loop.call_at(deadline, expire, waiting, timeout)
            waiting.timer_at = deadline
        return future

    def request_checkpoint(self, timeout: float) -> int:
        """Write a checkpoint record now (after whatever is queued); return its seq once durable."""
        with self._queue_lock:
            if self._failure is not None or self._closing:
                raise LogUnavailableError("the security log is not writable", reason="closed")
        result = self._flush(checkpoint=True)
        if isinstance(result, BaseException):
            raise copy_error(result) from result
        self._store.wait(result, timeout)
        return result

    # -- writing ----------------------------------------------------------

    def _flush_from_loop(self, waiting: LoopWaiters) -> None:
        waiting.flush_scheduled = False
        self._flush()

    def _flush(self, *, checkpoint: bool = False) -> BaseException | int:
        """Submit the pending group (the syncer seals, writes and syncs it).

        Returns:
            The group's error, or else the seq of the last record submitted
            (with ``checkpoint``, the checkpoint's: it ends the group).
        """
        with self._flush_lock:
            with self._queue_lock:
                group = self._group
                if not group.records and not checkpoint:
                    return self._store.last_submitted
                self._group = Group()
            error: BaseException | None = None
            try:
                if self._failure is not None:
                    raise self._failure
                first = self._store.write(group.records, checkpoint=checkpoint, reserve=not group.ordinary)
            except LogFullError as e:
                error = e
            except Exception as e:  # any other fault leaves the store in an unknown state: fail for good
                self._fail(e)
                error = e
            else:
                group.first = first
                durable = self._store.durable
                self._backlog = self._store.last_submitted - durable
                if durable >= first:
                    # Synced before ``first`` was set here: a loop woken meanwhile
                    # found nothing to resolve and must look again.
                    self._store.notify()
            if error is not None:
                group.error = error
                self._store.notify()  # the loops waiting on this group learn it now
                return error
            return self._store.last_submitted

    def _fail(self, error: BaseException) -> None:
        _log.error("security log write failed: %s", error)
        if self._failure is None:
            self._failure = error
        self.failed = True

    # -- waking async appenders --------------------------------------------

    def _subscribe(self, loop: asyncio.AbstractEventLoop) -> LoopWaiters:
        with self._loops_lock:
            for old in [w for w in self._loops.values() if w.loop.is_closed()]:
                # A closed loop's selector is gone with it: only our side is left to release.
                self._store.unsubscribe(old.eventfd)
                os.close(old.eventfd)
                del self._loops[old.loop]
            eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            try:
                self._store.subscribe(eventfd)
            except BaseException:
                os.close(eventfd)
                raise
            waiting = self._loops[loop] = LoopWaiters(loop, eventfd)
        loop.add_reader(eventfd, self._on_sync, waiting)
        return waiting

    def _on_sync(self, waiting: LoopWaiters) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(waiting.eventfd)
        self._resolve(waiting)
        self._report_syncs()
        if not self.failed and self._store.failure() is not None:
            self.failed = True

    def _report_syncs(self) -> None:
        """Hand the durations of the syncs made since the last report to ``on_commit``."""
        if self.on_commit is not None:
            for seconds in self._store.latencies():
                self.on_commit(seconds)

    def _resolve(self, waiting: LoopWaiters) -> None:
        """Settle, in order, the futures of the groups that are durable or failed."""
        settle(waiting, self._store.durable, self._failure_now)

    def _failure_now(self) -> BaseException | None:
        """Why the groups still waiting never will be durable (the log failed or closed), or None."""
        failure = self.failure
        if failure is None and self._closed:
            failure = LogUnavailableError("the security log is closed", reason="closed")
        return failure

    def _retire(self, waiting: LoopWaiters) -> None:
        """In the waiting loop, after the log closed: settle every future and release the eventfd."""
        self._resolve(waiting)
        if waiting.timer is not None:
            waiting.timer.cancel()
            waiting.timer = None
        waiting.loop.remove_reader(waiting.eventfd)
        os.close(waiting.eventfd)

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
            loops, self._loops = list(self._loops.values()), {}
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for waiting in loops:
            if waiting.loop.is_closed():
                os.close(waiting.eventfd)
            elif running is waiting.loop:
                self._retire(waiting)
            else:
                # Not this thread's loop: its eventfd is closed there, once it has settled the futures.
                with contextlib.suppress(RuntimeError):
                    waiting.loop.call_soon_threadsafe(self._retire, waiting)

    @property
    def failure(self) -> BaseException | None:
        """The fault that stopped the log, if any."""
        return self._failure or self._store.failure()
