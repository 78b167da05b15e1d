"""The segment store: what goes into the log, in which segment, and when it may drop.

Its place in the write pipeline is in :mod:`meterd.seclog`.  One caller at a
time calls :meth:`SegmentStore.write` (the writer serialises them); the store
takes no locks.  It decides what a group holds (the records, the log's own
records, a rotation, a drop at capacity) and submits it to the syncer.

Invariants:
    * ``seq`` is the last record submitted; :attr:`SegmentStore.durable` the
      last on stable storage.  The head's digest and the sealing key live only
      in the syncer's memory, where each key is erased as it evolves.
    * A rotation is submitted only once everything before it is durable.
    * A record is acknowledged only once durable; a failed write or sync
      leaves the store failed for good (the caller must not retry: after a
      failed fsync the file's contents are unknown).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from meterd.fsutil import fsync_directory
from meterd.seclog.classes import MARKERS, unauthenticated, unauthenticated_bytes
from meterd.seclog.codec import GENESIS, KEY_BYTES, FrameError, decode_frame
from meterd.seclog.config import FullPolicy, LogConfig
from meterd.seclog.entry import Clock, Entry, system_entry
from meterd.seclog.errors import LogCorruptError, LogFullError, LogUnavailableError
from meterd.seclog.events import EventType
from meterd.seclog.keys import KeyFile
from meterd.seclog.recovery import Segment, catch_up_key, recover_tail
from meterd.seclog.sealer import frames_size
from meterd.seclog.segments import (
    ACKNOWLEDGED_FILE,
    KEY_FILE,
    clear_append_only,
    last_line,
    list_segments,
    read_exported,
    read_released,
    segment_name,
    set_append_only,
)
from meterd.seclog.syncer import Syncer

_log = logging.getLogger(__name__)
#: Room kept for the log's own records (drops, warnings, checkpoints) in a full log, 1% of
#: capacity and at most this many bytes.
_SYSTEM_RESERVE = 4096
#: How far past its capacity an auditor's work on a full log may take it (logging in,
#: reading, acknowledging: a dozen records), so a full log can always be released.
AUDITOR_ALLOWANCE = 8192
#: Seconds a rotation waits for the previous segment to become durable: far
#: beyond any sync, it only bounds a stuck disk.
_ROTATION_WAIT = 60.0


class SegmentStore:
    """An open log directory, positioned at its durable head.

    Args:
        directory: The log directory (created by :meth:`create`).
        config: Limits and policies.

    Raises:
        LogCorruptError: The log is damaged other than by a torn last record.
        LogKeyError: The key file is missing, damaged or does not match the log.
    """

    def __init__(self, directory: Path, config: LogConfig) -> None:
        self.directory = directory
        self.config = config
        self._segments = [Segment(i, p, p.stat().st_size) for i, p in list_segments(directory)]
        if not self._segments:
            raise LogCorruptError("no segments: the log was never initialised", path=str(directory))
        self.recovery, head = recover_tail(self._segments, config.append_only_attr)
        for segment in self._segments:
            segment.untrusted = unauthenticated_bytes(segment.path.read_bytes())
        self._keys = KeyFile(directory / KEY_FILE)
        key = catch_up_key(self._keys, head)
        fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            if config.append_only_attr:
                set_append_only(fd, True)
            # From here on the chain head's digest and the key live only in the syncer.
            self.syncer = Syncer(
                fd, self._keys.fd, self._keys.slot, (head.seq, bytes.fromhex(head.digest), key)
            )
        except BaseException:
            os.close(fd)
            self._keys.close()
            raise
        del key
        self.usage = sum(s.size for s in self._segments)
        #: Bytes held by records about unauthenticated parties.
        self.untrusted = sum(s.untrusted for s in self._segments)
        #: True while the last group was refused for capacity (cleared by the next one written).
        self.full = False
        self._level = self._fill_level(self.usage)
        self._next_warning = self._warning_bytes(self._level)
        self._reserve = min(_SYSTEM_RESERVE, config.capacity_bytes // 100)
        self._since_checkpoint = 0
        self._clock = Clock()
        #: Seq of the last record of the last group this store submitted (what
        #: :attr:`seq` said right after it, without asking the syncer again).
        self.last_submitted = self.seq

    @staticmethod
    def create(directory: Path) -> bytes:
        """Create an empty log directory with a fresh key; return the initial key.

        Raises:
            FileExistsError: ``directory`` already holds a log.
        """
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        if list_segments(directory) or (directory / KEY_FILE).exists():
            raise FileExistsError(f"{directory}: already holds a security log")
        initial = os.urandom(KEY_BYTES)
        KeyFile.create(directory / KEY_FILE, 1, initial)
        os.close(os.open(directory / segment_name(1), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        fsync_directory(directory)
        return initial

    # -- writing ----------------------------------------------------------

    def _fill_level(self, usage: int) -> int:
        percent = usage * 100 // self.config.capacity_bytes
        return max((w for w in self.config.fill_warnings if percent >= w), default=0)

    def _warning_bytes(self, level: int) -> float:
        """Usage at which the next fill warning above ``level`` is due (inf: none left)."""
        above = [w for w in self.config.fill_warnings if w > level]
        # The least usage with usage * 100 // capacity >= w.
        return -(-min(above) * self.config.capacity_bytes // 100) if above else math.inf

    def _drop_for(self, needed: int, drops: list[Entry]) -> None:
        """Drop oldest segments until ``needed`` more bytes fit, adding a record per drop to ``drops``.

        Raises:
            LogFullError: The policy forbids dropping what would have to go
                (``drops`` still lists what was dropped before).
        """
        policy = self.config.full_policy
        exported: int | None = None
        while self.usage + needed > self.config.capacity_bytes:
            if policy is FullPolicy.REFUSE or len(self._segments) < 2:
                raise LogFullError("the security log is full and may not drop records")
            if exported is None:
                # Read only when something must go: this runs on every group written.
                exported = read_released(self.directory) if policy is FullPolicy.DROP_EXPORTED else 0
            oldest = self._segments[0]
            try:
                last = decode_frame(last_line(oldest.path)).record
            except FrameError:
                raise LogCorruptError(
                    "last record of the oldest segment is damaged", path=str(oldest.path)
                ) from None
            if policy is FullPolicy.DROP_EXPORTED and last.seq > exported:
                raise LogFullError(
                    f"the security log is full and records up to seq {last.seq} "
                    f"are not exported yet (exported up to {exported})"
                )
            clear_append_only(oldest.path)
            oldest.path.unlink()
            fsync_directory(self.directory)
            self._segments.pop(0)
            self.usage -= oldest.size
            self.untrusted -= oldest.untrusted
            drops.append(
                system_entry(
                    EventType.LOG_SEGMENT_DROPPED,
                    {
                        "segment": oldest.path.name,
                        "last_seq": last.seq,
                        "last_digest": last.digest,
                        # Who released it: the collector's confirmation, an auditor's acknowledgement.
                        "exported": last.seq <= read_exported(self.directory),
                        "acknowledged": last.seq <= read_exported(self.directory, ACKNOWLEDGED_FILE),
                    },
                )
            )
            _log.warning("security log full: dropped %s (records up to seq %d)", oldest.path.name, last.seq)

    def _make_room(self, size: int, own: list[Entry], reserve: bool) -> None:
        """Drop what the full policy allows so ``size`` more bytes fit, or refuse the group.

        Args:
            size: The group's bytes.
            own: The log's own records to write with it (drops are added).
            reserve: The group is an auditor's work on the log (the guard decides):
                it may go up to :data:`AUDITOR_ALLOWANCE` past the capacity and never
                drops anything, so a full log stays serviceable.

        Raises:
            LogFullError: They do not fit (the drops made are written first).
        """
        if reserve:
            # Beyond the capacity by at most a few records: an auditor's work on a full log.
            if self.usage + size <= self.config.capacity_bytes + AUDITOR_ALLOWANCE:
                return
            raise LogFullError("the security log is full, and so is the room kept for its auditor")
        kept = self._reserve
        if self.usage + size + kept <= self.config.capacity_bytes:
            return
        try:
            self._drop_for(size + kept, own)
        except LogFullError:
            self.full = True
            if own:  # what was dropped must be on record even though this group is refused
                self.write([], system=own)
                own.clear()
            raise

    def _rotate(self) -> int:
        """Create the next segment and return its descriptor (for the syncer, which closes the old one).

        Everything submitted before is durable first: recovery reads only the
        head segment's tail, so a torn record may never be left behind it.
        """
        self.syncer.wait(self.seq, _ROTATION_WAIT)
        head = self._segments[-1]
        index = head.index + 1
        path = self.directory / segment_name(index)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            if self.config.append_only_attr:
                set_append_only(fd, True)
            fsync_directory(self.directory)
        except BaseException:
            os.close(fd)
            raise
        self._segments.append(Segment(index, path, 0))
        return fd

    def write(
        self,
        records: list[bytes],
        *,
        checkpoint: bool = False,
        system: list[Entry] | None = None,
        reserve: bool = False,
    ) -> int:
        """Submit encoded ``records`` to the syncer (see :attr:`durable`); return the seq of the first.

        The log's own records (checkpoint, fill warning, segment drop) follow
        the caller's in the same group.  Sizes are exact before sealing (the C
        sealer's own formula, :func:`~meterd.seclog.sealer.frames_size`), so
        capacity and rotation are decided here.

        Raises:
            LogFullError: Capacity reached and the full policy refuses (none of
                ``records`` submitted; drop records may have been).
            OSError: Creating a segment failed; the store must not be used again.
            LogUnavailableError: The syncer failed or stopped.
        """
        ts = self._clock.stamp()
        first = self.seq + 1
        count = len(records)
        joined = b"\n".join(records)
        size = frames_size(len(joined) - count + 1, count, first, len(ts)) if count else 0
        own = list(system or [])
        usage = self.usage
        if count:
            self._make_room(size, own, reserve)
        untrusted = (
            self._untrusted_size(records, first, len(ts))
            if count and any(marker in joined for marker in MARKERS)
            else 0
        )
        if self.usage + size >= self._next_warning or self.usage < usage:  # a warning due, or dropped
            level = self._fill_level(self.usage + size)
            if level > self._level:
                own.append(
                    system_entry(
                        EventType.LOG_CAPACITY,
                        {
                            "percent": level,
                            "used_bytes": self.usage + size,
                            "capacity_bytes": self.config.capacity_bytes,
                        },
                    )
                )
            self._level = level
            self._next_warning = self._warning_bytes(level)
        self._since_checkpoint += count + len(own)
        checkpoint = checkpoint or self._since_checkpoint >= self.config.checkpoint_interval
        if checkpoint:
            # The head's digest is known only once sealed: the syncer fills in the placeholder.
            head_seq = self.seq + count + len(own)
            own.append(system_entry(EventType.LOG_CHECKPOINT, {"head_seq": head_seq, "head_digest": GENESIS}))
            self._since_checkpoint = 0
        if own:  # the caller's records are sized: only the log's own are added
            extra = b"\n".join([entry.fields for entry in own])
            size += frames_size(len(extra) - len(own) + 1, len(own), first + count, len(ts))
            if not count and self.usage + size > self.config.capacity_bytes:
                # A checkpoint asked for on its own must not grow a full log.
                self._since_checkpoint = 0
                raise LogFullError("the security log is full: no room for a checkpoint")
            joined = joined + b"\n" + extra if count else extra
            count += len(own)
        if not count:
            return first
        head = self._segments[-1]
        new_fd = -1
        if head.size and head.size + size > self.config.segment_bytes:
            new_fd = self._rotate()
            head = self._segments[-1]
        try:
            self.syncer.submit(joined, count, ts, new_segment_fd=new_fd, checkpoint_last=checkpoint)
        except BaseException:
            if new_fd >= 0:
                os.close(new_fd)
            raise
        self.last_submitted = first + count - 1
        head.size += size
        head.untrusted += untrusted
        self.usage += size
        self.untrusted += untrusted
        if records and not reserve:
            self.full = False  # an ordinary append fitted again
        return first

    @staticmethod
    def _untrusted_size(records: list[bytes], first: int, ts_len: int) -> int:
        """Bytes the group's records about unauthenticated parties will take as frames."""
        return sum(
            frames_size(len(record), 1, first + n, ts_len)
            for n, record in enumerate(records)
            if unauthenticated(record)
        )

    # -- durability (the syncer's, for the writer: it reaches C only through the store) --

    @property
    def seq(self) -> int:
        """Seq of the last record submitted (the syncer numbers records)."""
        return self.syncer.submitted

    @property
    def durable(self) -> int:
        """Seq of the last record on stable storage."""
        return self.syncer.durable

    def wait(self, seq: int, timeout: float) -> None:
        """Block (without the interpreter lock) until ``seq`` is durable (see :meth:`Syncer.wait`)."""
        self.syncer.wait(seq, timeout)

    def subscribe(self, eventfd: int) -> None:
        """Have ``eventfd`` written after every sync (see :meth:`Syncer.subscribe`)."""
        self.syncer.subscribe(eventfd)

    def unsubscribe(self, eventfd: int) -> None:
        """Stop writing ``eventfd``; once this returns it may be closed."""
        self.syncer.unsubscribe(eventfd)

    def notify(self) -> None:
        """Wake every subscriber now (a group failed before reaching the disk)."""
        self.syncer.notify()

    def latencies(self) -> list[float]:
        """Return the durations (seconds) of the syncs made since the last call, oldest first."""
        return self.syncer.latencies()

    def failure(self) -> LogUnavailableError | None:
        """The error that stopped the syncer for good, or None."""
        return self.syncer.failure()

    def close(self) -> LogUnavailableError | None:
        """Write and sync what was submitted, store the key, stop the syncer, close the files.

        Returns:
            The syncer's failure, if it failed: some submitted records may not
            be durable (their appenders were told so).
        """
        try:
            return self.syncer.stop()
        finally:
            self._keys.close()
