"""The syncer: native threads that seal, write and sync without the interpreter lock.

The typed wrapper of ``native/meterd_sync.c`` (its place in the pipeline is
in :mod:`meterd.seclog`; its threads in ``native/meterd_sync.h``).  Needing
no Python, they keep the disk and the second core busy with one group while
the appenders of the next one run, which a Python writer thread cannot: it
would queue for the interpreter lock behind them after every sync.
"""

from __future__ import annotations

import enum
import os
import threading

import meterd.seclog.sealer  # noqa: F401  (initialises the sealer the syncer runs)
from meterd.seclog.codec import KEY_BYTES
from meterd.seclog.errors import LogUnavailableError
from meterd.seclog.native import FAULTS, ffi, lib

if lib.MTR_SYNC_KEY_BYTES != KEY_BYTES:
    raise ImportError("meterd._seal was built for another key size")

#: The most event loops that may wait on one log at once.
MAX_SUBSCRIBERS: int = lib.MTR_SYNC_MAX_SUBSCRIBERS


class Fault(enum.IntEnum):
    """Storage faults a test can inject into a syncer (test build only: :mod:`~meterd.seclog.native`)."""

    #: The storage behaves.
    NONE = lib.MTR_SYNC_FAULT_NONE
    #: Every sync fails with the errno given as value.
    FAIL = lib.MTR_SYNC_FAULT_FAIL
    #: Every sync waits until the fault is changed.
    STALL = lib.MTR_SYNC_FAULT_STALL
    #: Every sync takes the value in microseconds longer.
    DELAY = lib.MTR_SYNC_FAULT_DELAY
    #: Every write goes in two halves, the value in microseconds apart (what a crash can tear).
    TEAR = lib.MTR_SYNC_FAULT_TEAR


def _failed(code: int) -> LogUnavailableError:
    if code == lib.MTR_SYNC_E_TIMEOUT:
        return LogUnavailableError("the security log did not confirm in time", reason="timeout")
    if code == lib.MTR_SYNC_E_CLOSED:
        return LogUnavailableError("the security log is closed", reason="closed")
    if code > 0:
        return LogUnavailableError(
            f"the security log failed: writing to storage: {os.strerror(code)}", reason="failed"
        )
    if code == lib.MTR_SYNC_E_SEAL:
        return LogUnavailableError("the security log failed: a group could not be sealed", reason="failed")
    return LogUnavailableError(f"the security log's syncer refused (error {code})", reason="failed")


class Syncer:
    """The sealing, writing and syncing threads of one open log.

    Args:
        segment_fd: The head segment, open for appending; the syncer closes it.
        key_fd: The key file, open for reading and writing (and locked);
            it must stay open until :meth:`stop` returns.
        key_slot: The key file's valid slot (0 or 1).
        head: The durable head: its seq, the digest of its body, and the key sealing ``seq + 1``.

    Raises:
        LogUnavailableError: No thread could be started.
    """

    def __init__(self, segment_fd: int, key_fd: int, key_slot: int, head: tuple[int, bytes, bytes]) -> None:
        seq, prev, key = head
        handle = lib.mtr_syncer_start(segment_fd, key_fd, key_slot, seq, prev, key)
        if handle == ffi.NULL:
            raise LogUnavailableError("cannot start the security log's syncer", reason="failed")
        # Freed when the last reference goes, never under a caller still inside a call.
        self._handle = ffi.gc(handle, lib.mtr_syncer_free)
        self._latencies = ffi.new("double[]", lib.MTR_SYNC_LATENCIES)
        self._latency_lock = threading.Lock()

    def submit(
        self,
        records: bytes,
        count: int,
        ts: bytes,
        *,
        new_segment_fd: int = -1,
        checkpoint_last: bool = False,
    ) -> None:
        """Queue a group of records (their encoded fields) to be sealed after the last submitted.

        Args:
            records: The records' encoded fields, separated by newlines
                (which encoded fields never hold).
            count: How many records.
            ts: The group's timestamp.
            new_segment_fd: A new head segment this group starts (everything
                before must be durable); the syncer owns it once this returns.
            checkpoint_last: The last record is a checkpoint whose
                ``head_digest`` holds a placeholder for the previous record's digest.

        Raises:
            LogUnavailableError: The syncer failed or stopped, or ``count`` does not
                match ``records`` (``new_segment_fd`` stays the caller's).
        """
        rc = lib.mtr_syncer_submit(
            self._handle, records, len(records), count, ts, len(ts), new_segment_fd, checkpoint_last
        )
        if rc:
            raise _failed(rc)

    @property
    def submitted(self) -> int:
        """Seq of the last record submitted: the syncer numbers the records."""
        return int(lib.mtr_syncer_submitted(self._handle))

    def wait(self, seq: int, timeout: float) -> None:
        """Block (without the interpreter lock) until ``seq`` is durable.

        Raises:
            LogUnavailableError: Timed out, stopped first, or failed.
        """
        rc = lib.mtr_syncer_wait(self._handle, seq, max(0, int(timeout * 1e9)))
        if rc:
            raise _failed(rc)

    @property
    def durable(self) -> int:
        """Seq of the last record on stable storage."""
        return int(lib.mtr_syncer_durable(self._handle))

    def failure(self) -> LogUnavailableError | None:
        """The error that stopped the syncer for good, or None."""
        code = lib.mtr_syncer_failure(self._handle)
        return _failed(code) if code else None

    def subscribe(self, eventfd: int) -> None:
        """Have ``eventfd`` written after every sync.

        Raises:
            LogUnavailableError: Already :data:`MAX_SUBSCRIBERS` subscribers.
        """
        if lib.mtr_syncer_subscribe(self._handle, eventfd):
            raise LogUnavailableError(
                f"more than {MAX_SUBSCRIBERS} event loops wait on the security log", reason="overloaded"
            )

    def unsubscribe(self, eventfd: int) -> None:
        """Stop writing ``eventfd``; once this returns it may be closed."""
        lib.mtr_syncer_unsubscribe(self._handle, eventfd)

    def notify(self) -> None:
        """Wake every subscriber now (a group failed before reaching the disk)."""
        lib.mtr_syncer_notify(self._handle)

    def latencies(self) -> list[float]:
        """Return the durations (seconds) of the syncs made since the last call, oldest first."""
        with self._latency_lock:
            n = lib.mtr_syncer_latencies(self._handle, self._latencies, lib.MTR_SYNC_LATENCIES)
            return list(self._latencies[0:n])

    def set_fault(self, fault: Fault, value: int = 0) -> None:
        """Make the storage misbehave from the next write or sync on (tests of failure handling).

        Raises:
            LogUnavailableError: Not the test build (see :mod:`meterd.seclog.native`).
        """
        if not FAULTS:
            raise LogUnavailableError("storage faults exist only in the test build", reason="failed")
        lib.mtr_syncer_set_fault(self._handle, fault, value)

    def stop(self) -> LogUnavailableError | None:
        """Sync everything requested and its key, stop the thread; return the failure, if any."""
        rc = lib.mtr_syncer_stop(self._handle)
        return _failed(rc) if rc > 0 else None
