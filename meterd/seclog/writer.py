"""Group commit: many appenders, one writer thread, one write and one sync per batch.

Appenders put a validated entry into the pending batch and wait on the batch's
event (threads) or on a future resolved through the event loop
(``call_soon_threadsafe``), so an ``async`` appender never blocks its loop
beyond a short, uncontended lock.  The writer takes the whole pending batch,
commits it through the store (one ``write`` + one ``fdatasync`` of the
segment), wakes every waiter of that batch at once, then syncs the evolved key
while they prepare the next batch: whatever queued meanwhile shares the next
sync, which is what makes throughput under load far above one sync per record.

Failure is loud and prompt: a failed write or sync fails its batch, every
queued batch and every later append (the store's state is then unknown); a
full log fails only the batch refused; an append that waits longer than its
timeout raises instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

from meterd.seclog.entry import Entry
from meterd.seclog.errors import LogFullError, LogUnavailableError
from meterd.seclog.store import SegmentStore

_log = logging.getLogger(__name__)

_AsyncWaiter = tuple["asyncio.Future[int]", int]


class _LoopWaiters:
    """The async waiters of one batch in one event loop, sharing one deadline timer.

    One timer per batch and loop (rather than one per append) keeps the
    async hot path cheap; every waiter's deadline is at most its timeout.
    """

    __slots__ = ("timer", "waiters")

    def __init__(self) -> None:
        self.waiters: list[_AsyncWaiter] = []
        self.timer: asyncio.TimerHandle | None = None


class _Batch:
    __slots__ = ("checkpoint", "entries", "error", "first", "gate", "loops")

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        # A gate rather than an Event: each woken waiter lets the next one
        # through, instead of all of them stampeding for one condition lock.
        self.gate = threading.Lock()
        self.gate.acquire()
        self.error: BaseException | None = None
        self.first = 0
        self.checkpoint = False
        self.loops: dict[asyncio.AbstractEventLoop, _LoopWaiters] = {}

    def wait(self, timeout: float) -> bool:
        """Wait until the batch is finished; False on timeout."""
        if not self.gate.acquire(timeout=timeout):
            return False
        self.gate.release()
        return True

    def finish(self) -> None:
        self.gate.release()
        for loop, waiters in self.loops.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, waiters, self.first, self.error)


def _resolve(group: _LoopWaiters, first: int, error: BaseException | None) -> None:
    if group.timer is not None:
        group.timer.cancel()
    for future, index in group.waiters:
        if future.done():
            continue  # timed out or cancelled
        if error is not None:
            future.set_exception(_copy_error(error))
        else:
            future.set_result(first + index)


def _expire(group: _LoopWaiters, timeout: float) -> None:
    for future, _ in group.waiters:
        if not future.done():
            future.set_exception(
                LogUnavailableError(f"the security log did not confirm within {timeout} s", reason="timeout")
            )


def _copy_error(error: BaseException) -> BaseException:
    """Return an exception to raise in one waiter (shared instances would share tracebacks)."""
    if isinstance(error, LogFullError):
        return LogFullError(str(error))
    if isinstance(error, LogUnavailableError):
        return LogUnavailableError(str(error), reason=error.reason)
    return LogUnavailableError(f"the security log failed: {error}", reason="failed")


class GroupCommitWriter:
    """The single writer thread of a log.

    Args:
        store: The open store; only this writer touches it from now on.
        max_pending: Bound on queued entries.
        on_stop: Called in the writer thread after the last commit (to close the store).
    """

    def __init__(self, store: SegmentStore, max_pending: int, on_stop: Callable[[], None]) -> None:
        self._store = store
        self._max_pending = max_pending
        self._on_stop = on_stop
        self._cond = threading.Condition(threading.Lock())
        self._pending = _Batch()
        self._closing = False
        self._failure: BaseException | None = None
        #: Called in the writer thread with each durable commit's duration in seconds
        #: (write and sync); it must be cheap and must not raise (the flush-latency metric).
        self.on_commit: Callable[[float], None] | None = None
        self._thread = threading.Thread(target=self._run, name="seclog-writer", daemon=True)
        self._thread.start()

    def _enqueue(self, entry: Entry) -> tuple[_Batch, int]:
        if self._failure is not None:
            raise LogUnavailableError(f"the security log failed: {self._failure}", reason="failed")
        if self._closing:
            raise LogUnavailableError("the security log is closed", reason="closed")
        batch = self._pending
        index = len(batch.entries)
        if index >= self._max_pending:
            raise LogUnavailableError("too many records waiting for the security log", reason="overloaded")
        batch.entries.append(entry)
        if index == 0:
            self._cond.notify()
        return batch, index

    def append(self, entry: Entry, timeout: float) -> int:
        """Queue ``entry`` and wait until it is durable; return its seq.

        Raises:
            LogUnavailableError: Closed, failed, overloaded, full, or not durable
                within ``timeout`` seconds.
        """
        with self._cond:
            batch, index = self._enqueue(entry)
        if not batch.wait(timeout):
            raise LogUnavailableError(
                f"the security log did not confirm within {timeout} s", reason="timeout"
            )
        if batch.error is not None:
            raise _copy_error(batch.error) from batch.error
        return batch.first + index

    def submit(self, entry: Entry, timeout: float) -> asyncio.Future[int]:
        """Queue ``entry`` from a running event loop; return a future of its seq.

        A plain function returning the future (rather than a coroutine) keeps
        one coroutine frame off the hot path.  The future fails with
        :class:`LogUnavailableError` like :meth:`append` does.

        Raises:
            LogUnavailableError: Closed, failed or overloaded (at once).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        with self._cond:
            batch, index = self._enqueue(entry)
            group = batch.loops.get(loop)
            if group is None:
                group = batch.loops[loop] = _LoopWaiters()
            group.waiters.append((future, index))
        if group.timer is None:
            # Only this loop's thread touches the timer, and _resolve runs in it too.
            group.timer = loop.call_later(timeout, _expire, group, timeout)
        return future

    def request_checkpoint(self, timeout: float) -> None:
        """Write a checkpoint record now (with whatever else is queued) and wait for it."""
        with self._cond:
            if self._failure is not None or self._closing:
                raise LogUnavailableError("the security log is not writable", reason="closed")
            batch = self._pending
            batch.checkpoint = True
            self._cond.notify()
        if not batch.wait(timeout):
            raise LogUnavailableError("checkpoint not confirmed in time", reason="timeout")
        if batch.error is not None:
            raise _copy_error(batch.error) from batch.error

    def _take(self) -> _Batch | None:
        with self._cond:
            while not self._pending.entries and not self._pending.checkpoint and not self._closing:
                self._cond.wait()
            batch = self._pending
            if not batch.entries and not batch.checkpoint:
                return None
            self._pending = _Batch()
            return batch

    def _run(self) -> None:
        try:
            while (batch := self._take()) is not None:
                self._commit(batch)
        finally:
            with self._cond:
                self._closing = True
                leftover, self._pending = self._pending, _Batch()
            leftover.error = LogUnavailableError("the security log is closed", reason="closed")
            leftover.finish()
            self._on_stop()

    def _commit(self, batch: _Batch) -> None:
        try:
            if self._failure is not None:
                raise self._failure
            started = time.perf_counter()
            batch.first = self._store.commit(batch.entries, checkpoint=batch.checkpoint)
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - started)
        except LogFullError as e:
            batch.error = e
        except Exception as e:  # any other fault leaves the store in an unknown state: fail for good
            self._fail(e)
            batch.error = e
        batch.finish()
        if self._failure is None:
            try:
                # After the release: the records are durable; this sync overlaps
                # with the appenders preparing the next group.
                self._store.sync_key()
            except Exception as e:
                self._fail(e)

    def _fail(self, error: BaseException) -> None:
        _log.error("security log write failed: %s", error)
        if self._failure is None:
            self._failure = error

    def close(self, timeout: float) -> None:
        """Commit what is queued (with a final checkpoint), stop the thread and wait for it."""
        with self._cond:
            if not self._closing and self._failure is None:
                self._pending.checkpoint = True
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    @property
    def failure(self) -> BaseException | None:
        """The fault that stopped the log, if any."""
        return self._failure
