"""The segment store: recovery on open, sealing, rotation, capacity and durable commit.

Only the writer thread calls :meth:`SegmentStore.commit`; the store itself
takes no locks.  One commit is one group: every record is sealed, the frames
go out in one ``write``, then one ``fdatasync`` of the segment; then the
evolved key is written to the key file, the group's appenders are released,
and the key file is synced (:meth:`SegmentStore.sync_key`) while they go on.
The log is always durable before the key is written, so after any crash the
key on disk is never ahead of the log; it may be behind (a power cut before
the key sync), and reopening evolves it forward.

Invariants:
    * ``seq``/``digest``/``key`` describe the durable head: the last record on
      stable storage, its digest, and the key that will seal ``seq + 1``.
    * State advances only after a write and its sync succeeded; a failed write
      or sync leaves the store failed for good (the caller must not retry:
      after a failed fsync the file's contents are unknown).
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from meterd.fsutil import fsync_directory
from meterd.seclog.codec import GENESIS, KEY_BYTES, FrameError, decode_frame, evolve
from meterd.seclog.config import FILL_WARNINGS, FullPolicy, LogConfig
from meterd.seclog.entry import Entry, system_entry
from meterd.seclog.errors import LogCorruptError, LogFullError, LogKeyError
from meterd.seclog.events import EventType
from meterd.seclog.keys import KeyFile
from meterd.seclog.sealer import seal_batch
from meterd.seclog.segments import (
    KEY_FILE,
    clear_append_only,
    last_line,
    list_segments,
    read_exported,
    read_lines,
    segment_name,
    set_append_only,
)

_log = logging.getLogger(__name__)
#: Room kept for the log's own records (drops, warnings, checkpoints) in a full log,
#: as a fraction of capacity and at most this many bytes.
_SYSTEM_RESERVE = 4096


def utc_stamp() -> str:
    """Return the current UTC time as RFC 3339 with microseconds."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + (
        f".{ns // 1000 % 1_000_000:06d}Z"
    )


@dataclass(slots=True)
class _Segment:
    index: int
    path: Path
    size: int


@dataclass(frozen=True, slots=True)
class Recovery:
    """What reopening found at the tail.

    Attributes:
        segment: Name of the segment whose torn tail was cut, or empty.
        offset: Where the cut was made.
        cut_bytes: How many bytes were cut (0: nothing was torn).
    """

    segment: str = ""
    offset: int = 0
    cut_bytes: int = 0


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
        self._segments = [_Segment(i, p, p.stat().st_size) for i, p in list_segments(directory)]
        if not self._segments:
            raise LogCorruptError("no segments: the log was never initialised", path=str(directory))
        self.recovery = self._recover_tail()
        self._keys = KeyFile(directory / KEY_FILE)
        self.key = self._catch_up_key()
        head = self._segments[-1]
        self._fd = os.open(head.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        if config.append_only_attr:
            set_append_only(self._fd, True)
        self.usage = sum(s.size for s in self._segments)
        self._level = self._fill_level(self.usage)
        self._since_checkpoint = 0

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

    # -- recovery ---------------------------------------------------------

    def _recover_tail(self) -> Recovery:
        """Cut a torn last record, then find the head (seq, digest)."""
        self.seq, self.digest = 0, GENESIS
        head = self._segments[-1]
        recovery = Recovery()
        self._tail: dict[int, tuple[str, str]] = {}
        lines = list(read_lines(head.path))
        good_end = 0
        for n, line in enumerate(lines):
            try:
                if not line.complete:
                    raise FrameError("torn")
                record = decode_frame(line.data).record
            except FrameError:
                if n != len(lines) - 1:
                    raise LogCorruptError(
                        "damaged record before the end of the log", path=str(head.path), seq=self.seq + 1
                    ) from None
                recovery = Recovery(head.path.name, line.offset, len(line.data))
                break
            if self.seq and (record.seq != self.seq + 1 or record.prev != self.digest):
                raise LogCorruptError("records out of order", path=str(head.path), seq=record.seq)
            self.seq, self.digest = record.seq, record.digest
            self._tail[record.seq] = (record.digest, record.mac)
            good_end = line.offset + len(line.data)
        if recovery.cut_bytes:
            self._cut(head, good_end)
        if not self.seq:
            self._head_from_previous()
        return recovery

    def _cut(self, head: _Segment, good_end: int) -> None:
        clear_append_only(head.path)
        fd = os.open(head.path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, good_end)
            os.fsync(fd)
            if self.config.append_only_attr:
                set_append_only(fd, True)
        finally:
            os.close(fd)
        head.size = good_end

    def _head_from_previous(self) -> None:
        """The head segment holds no record: the head is the previous segment's last."""
        if len(self._segments) < 2:
            return  # a brand-new log: genesis
        path = self._segments[-2].path
        try:
            record = decode_frame(last_line(path)).record
        except FrameError:
            raise LogCorruptError("last record of the previous segment is damaged", path=str(path)) from None
        self.seq, self.digest = record.seq, record.digest

    def _catch_up_key(self) -> bytes:
        seq_next, key = self._keys.load()
        if seq_next > self.seq + 1:
            raise LogKeyError(
                f"the sealing key is for seq {seq_next} but the log ends at seq {self.seq}: "
                "acknowledged records are missing"
            )
        while seq_next <= self.seq:
            sealed = self._tail.get(seq_next)
            if sealed and hmac.digest(key, bytes.fromhex(sealed[0]), "sha256").hex() != sealed[1]:
                raise LogKeyError(f"the sealing key does not match the log at seq {seq_next}")
            key = evolve(key)
            seq_next += 1
        self._tail.clear()
        return key

    # -- writing ----------------------------------------------------------

    def _fill_level(self, usage: int) -> int:
        percent = usage * 100 // self.config.capacity_bytes
        return max((w for w in FILL_WARNINGS if percent >= w), default=0)

    @staticmethod
    def _seal(
        entries: list[Entry], head: tuple[int, str, bytes], ts: str, out: list[bytes]
    ) -> tuple[int, str, bytes]:
        """Seal ``entries`` after ``head`` (seq, digest, key); append their frames to ``out``."""
        seq, prev, key = head
        if not entries:
            return head
        frames, digest, key = seal_batch(
            [entry.fields for entry in entries], seq, bytes.fromhex(prev), key, ts.encode("ascii")
        )
        out.append(frames)
        return seq + len(entries), digest.hex(), key

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
                # Read only when something must go: this runs on every group commit.
                exported = read_exported(self.directory) if policy is FullPolicy.DROP_EXPORTED else 0
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
            drops.append(
                system_entry(
                    EventType.LOG_SEGMENT_DROPPED,
                    {
                        "segment": oldest.path.name,
                        "last_seq": last.seq,
                        "last_digest": last.digest,
                        "exported": policy is FullPolicy.DROP_EXPORTED
                        or last.seq <= read_exported(self.directory),
                    },
                )
            )
            _log.warning("security log full: dropped %s (records up to seq %d)", oldest.path.name, last.seq)

    def _rotate(self) -> None:
        head = self._segments[-1]
        index = head.index + 1
        path = self.directory / segment_name(index)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        if self.config.append_only_attr:
            set_append_only(fd, True)
        fsync_directory(self.directory)
        os.close(self._fd)
        self._fd = fd
        self._segments.append(_Segment(index, path, 0))

    def commit(
        self, entries: list[Entry], *, checkpoint: bool = False, system: list[Entry] | None = None
    ) -> int:
        """Seal ``entries`` and make them durable; return the seq of the first.

        The log's own records (checkpoint, fill warning, segment drop) follow
        the entries in the same write.

        Raises:
            LogFullError: Capacity reached and the full policy refuses (none of
                ``entries`` written).
            OSError: Writing or syncing failed; the store must not be used again.
        """
        ts = utc_stamp()
        frames: list[bytes] = []
        seq, prev, key = self._seal(entries, (self.seq, self.digest, self.key), ts, frames)
        size = sum(map(len, frames))
        system = list(system or [])
        if entries:
            try:
                self._drop_for(size + min(_SYSTEM_RESERVE, self.config.capacity_bytes // 100), system)
            except LogFullError:
                if system:  # what was dropped must be on record even though this batch is refused
                    self.commit([], system=system)
                raise
        level = self._fill_level(self.usage + size)
        if level > self._level:
            system.append(
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
        self._since_checkpoint += len(entries) + len(system)
        if checkpoint or self._since_checkpoint >= self.config.checkpoint_interval:
            seq, prev, key = self._seal(system, (seq, prev, key), ts, frames)
            system = [system_entry(EventType.LOG_CHECKPOINT, {"head_seq": seq, "head_digest": prev})]
            self._since_checkpoint = 0
        seq, prev, key = self._seal(system, (seq, prev, key), ts, frames)
        data = b"".join(frames)
        head = self._segments[-1]
        if head.size and head.size + len(data) > self.config.segment_bytes:
            self._rotate()
            head = self._segments[-1]
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fdatasync(self._fd)
        self._keys.stage(seq + 1, key)
        first = self.seq + 1
        self.seq, self.digest, self.key = seq, prev, key
        head.size += len(data)
        self.usage += len(data)
        return first

    def sync_key(self) -> None:
        """Make the key staged by the last commit durable and erase its predecessor.

        Called after the commit's appenders were released: the records are
        already durable, and a key file left one group behind by a power cut
        is caught up on the next open, so its sync need not delay anyone.

        Raises:
            OSError: The key file could not be synced; the store must not be used again.
        """
        self._keys.sync()

    def close(self) -> None:
        """Sync the key, close the files; the key stays on disk for the next open."""
        try:
            self._keys.sync()
        finally:
            os.close(self._fd)
            self._keys.close()
