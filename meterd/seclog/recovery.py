"""Reopening a log: cut a torn last record, find the durable head, bring the key up to it.

After a crash the head segment may end in a torn record (a write that never
completed): it is cut, and the cut is reported (the log records it).  Damage
anywhere else is not a crash's doing and refuses the open.  The key file may
lag the log by the records written after it was last stored (never lead it:
see ``keep_keys`` in ``native/meterd_sync.c``); it is evolved forward,
checking each MAC of the head segment on the way.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

from meterd.record import record
from meterd.seclog.codec import GENESIS, FrameError, decode_frame, evolve
from meterd.seclog.errors import LogCorruptError, LogKeyError
from meterd.seclog.keys import KeyFile
from meterd.seclog.segments import clear_append_only, last_line, read_lines, set_append_only


@dataclass(slots=True)
class Segment:
    """One segment of an open log."""

    index: int
    path: Path
    size: int
    #: Bytes of records about unauthenticated parties (see :mod:`meterd.seclog.classes`).
    untrusted: int = 0


@record
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


@dataclass(slots=True)
class Head:
    """The durable head found on reopening.

    Attributes:
        seq: Seq of the last record (0: an empty log).
        digest: Its digest (genesis for an empty log).
        sealed: ``seq -> (digest, mac)`` of the head segment's records, to check the key against.
    """

    seq: int = 0
    digest: str = GENESIS
    sealed: dict[int, tuple[str, str]] = field(default_factory=dict)


def recover_tail(segments: list[Segment], append_only: bool) -> tuple[Recovery, Head]:
    """Cut a torn last record of the head segment, then find the head.

    Raises:
        LogCorruptError: Damage before the end, records out of order, or a
            damaged last record of the previous segment.
    """
    head = Head()
    last = segments[-1]
    recovery = Recovery()
    lines = list(read_lines(last.path))
    good_end = 0
    for n, line in enumerate(lines):
        try:
            if not line.complete:
                raise FrameError("torn")
            record = decode_frame(line.data).record
        except FrameError:
            if n != len(lines) - 1:
                raise LogCorruptError(
                    "damaged record before the end of the log", path=str(last.path), seq=head.seq + 1
                ) from None
            recovery = Recovery(last.path.name, line.offset, len(line.data))
            break
        if head.seq and (record.seq != head.seq + 1 or record.prev != head.digest):
            raise LogCorruptError("records out of order", path=str(last.path), seq=record.seq)
        head.seq, head.digest = record.seq, record.digest
        head.sealed[record.seq] = (record.digest, record.mac)
        good_end = line.offset + len(line.data)
    if recovery.cut_bytes:
        _cut(last, good_end, append_only)
    if not head.seq and len(segments) > 1:
        # The head segment holds no record: the head is the previous segment's last.
        path = segments[-2].path
        try:
            record = decode_frame(last_line(path)).record
        except FrameError:
            raise LogCorruptError("last record of the previous segment is damaged", path=str(path)) from None
        head.seq, head.digest = record.seq, record.digest
    return recovery, head


def _cut(segment: Segment, good_end: int, append_only: bool) -> None:
    clear_append_only(segment.path)
    fd = os.open(segment.path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, good_end)
        os.fsync(fd)
        if append_only:
            set_append_only(fd, True)
    finally:
        os.close(fd)
    segment.size = good_end


def catch_up_key(keys: KeyFile, head: Head) -> bytes:
    """Return the key sealing ``head.seq + 1``, evolved forward from the key file's.

    Raises:
        LogKeyError: The key is ahead of the log (acknowledged records are
            missing) or does not match the head segment's MACs.
    """
    seq_next, key = keys.load()
    if seq_next > head.seq + 1:
        raise LogKeyError(
            f"the sealing key is for seq {seq_next} but the log ends at seq {head.seq}: "
            "acknowledged records are missing"
        )
    while seq_next <= head.seq:
        sealed = head.sealed.get(seq_next)
        if sealed and hmac.digest(key, bytes.fromhex(sealed[0]), "sha256").hex() != sealed[1]:
            raise LogKeyError(f"the sealing key does not match the log at seq {seq_next}")
        key = evolve(key)
        seq_next += 1
    head.sealed.clear()
    return key
