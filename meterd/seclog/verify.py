"""Verification of a log directory or an exported copy: chain, order, MACs, checkpoints.

What is checked, record by record, stopping at the first problem:
    * each line is a complete frame with a good checksum (else *edited*, or
      *truncated* for a torn last line);
    * sequence numbers rise by one (a repeat of the previous record is
      *duplicated*; a gap whose record shows up later is *reordered*, one that
      never does is *missing*);
    * each record's ``prev`` is the previous record's digest (else *edited*);
    * with the auditor's initial key, each MAC under the recomputed key
      sequence (a bad MAC whose record no longer matches its successor's link
      is *edited*; otherwise *bad MAC*: re-sealed, forged or wrong key);
    * every checkpoint record names the record before it;
    * with an external checkpoint (``from_checkpoint``), the log must reach
      that seq with the same digest (else *truncated* or *edited*);
    * a log that starts after seq 1 (oldest segments dropped at capacity)
      must hold the ``log_segment_dropped`` record that vouches for the start.

Without a key, anyone who rewrites the whole tail consistently (recomputing
checksums and links) is not caught: only the MACs, or a checkpoint held
elsewhere, tell authentic records from rewritten ones.
"""

from __future__ import annotations

import enum
import hmac
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from meterd.seclog.codec import GENESIS, FrameError, decode_frame, evolve, key_at
from meterd.seclog.events import EventType, Record
from meterd.seclog.reader import iter_lines
from meterd.seclog.segments import Line

#: How far ahead a missing record is looked for before calling it missing, not reordered.
LOOKAHEAD = 100_000


class Problem(enum.Enum):
    """What verification found wrong.  The value is the word tools print."""

    EDITED = "edited"
    REORDERED = "reordered"
    MISSING = "missing"
    DUPLICATED = "duplicated"
    TRUNCATED = "truncated"
    BAD_MAC = "bad MAC"


@dataclass(frozen=True, slots=True)
class Finding:
    """The first problem found.

    Attributes:
        seq: The first bad sequence number.
        problem: What is wrong.
        message: One line for a human.
        location: ``file:offset`` where it was noticed, or empty.
    """

    seq: int
    problem: Problem
    message: str
    location: str = ""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of :func:`verify`.

    Attributes:
        records: Records checked.
        first_seq: Seq of the first record (0 if none).
        last_seq: Seq of the last record checked.
        mac_checked: True when MACs were checked with a key.
        checkpoints: Checkpoint records seen and consistent.
        anchored: True when an external checkpoint was given and matched.
        finding: The first problem, or None when the log is intact.
    """

    records: int
    first_seq: int
    last_seq: int
    mac_checked: bool
    checkpoints: int
    anchored: bool
    finding: Finding | None

    @property
    def ok(self) -> bool:
        """True when nothing was found wrong."""
        return self.finding is None


class _FoundError(Exception):
    def __init__(self, finding: Finding) -> None:
        self.finding = finding


def _where(line: Line) -> str:
    return f"{line.path}:{line.offset}"


class _Verifier:
    def __init__(self, key: bytes | None, checkpoint: Record | None) -> None:
        self.initial = key
        self.key = b""
        self.checkpoint = checkpoint
        self.records = 0
        self.first = 0
        self.expected = 0
        self.prev = GENESIS
        self.checkpoints = 0
        self.anchored = False
        self.drops: set[tuple[int, str]] = set()
        self.start_link = ("", 0)
        self.bad_mac: Record | None = None

    def run(self, lines: Iterator[Line]) -> None:
        for line in lines:
            if not line.complete:
                raise _FoundError(
                    Finding(
                        self.expected or 1,
                        Problem.TRUNCATED,
                        "the last record is torn (its write never completed)",
                        _where(line),
                    )
                )
            try:
                record = decode_frame(line.data).record
            except FrameError as e:
                raise _FoundError(
                    Finding(self.expected or 1, Problem.EDITED, f"record does not decode ({e})", _where(line))
                ) from None
            if not self.expected:
                self._start(record)
            elif record.seq != self.expected:
                self._out_of_order(record, line, lines)
            self._check(record, line)

    def _start(self, record: Record) -> None:
        self.first = self.expected = record.seq
        if record.seq == 1:
            self.prev = record.prev if record.prev == GENESIS else "!"
        else:
            self.prev = record.prev
            self.start_link = (record.prev, record.seq - 1)
        if self.initial is not None:
            self.key = key_at(self.initial, record.seq)

    def _out_of_order(self, record: Record, line: Line, lines: Iterator[Line]) -> None:
        if record.seq == self.expected - 1 and record.digest == self.prev:
            raise _FoundError(
                Finding(record.seq, Problem.DUPLICATED, f"record {record.seq} appears twice", _where(line))
            )
        if record.seq < self.expected:
            raise _FoundError(
                Finding(
                    record.seq,
                    Problem.REORDERED,
                    f"record {record.seq} appears after record {self.expected - 1}",
                    _where(line),
                )
            )
        for later in itertools.islice(lines, LOOKAHEAD):
            try:
                seq = decode_frame(later.data).record.seq
            except FrameError:
                continue
            if seq == self.expected:
                raise _FoundError(
                    Finding(
                        self.expected,
                        Problem.REORDERED,
                        f"record {self.expected} appears after record {record.seq}",
                        _where(later),
                    )
                )
        last = record.seq - 1
        span = f"records {self.expected}..{last} are" if last > self.expected else f"record {last} is"
        raise _FoundError(Finding(self.expected, Problem.MISSING, f"{span} missing", _where(line)))

    def _check(self, record: Record, line: Line) -> None:
        if self.bad_mac is not None:
            bad = self.bad_mac
            if record.prev != bad.digest:
                raise _FoundError(
                    Finding(bad.seq, Problem.EDITED, f"record {bad.seq} was changed", _where(line))
                )
            raise _FoundError(
                Finding(
                    bad.seq,
                    Problem.BAD_MAC,
                    f"record {bad.seq} has a bad MAC (re-sealed, forged, or wrong key)",
                )
            )
        if record.prev != self.prev:
            seq = record.seq if self.initial is not None or record.seq == 1 else record.seq - 1
            raise _FoundError(
                Finding(
                    seq,
                    Problem.EDITED,
                    f"the chain breaks between records {record.seq - 1} and {record.seq}",
                    _where(line),
                )
            )
        if self.initial is not None:
            mac = hmac.digest(self.key, bytes.fromhex(record.digest), "sha256").hex()
            if not hmac.compare_digest(mac, record.mac):
                self.bad_mac = record
            self.key = evolve(self.key)
        self._check_special(record, line)
        self.records += 1
        self.expected = record.seq + 1
        self.prev = record.digest

    def _check_special(self, record: Record, line: Line) -> None:
        detail = record.detail
        if record.event is EventType.LOG_CHECKPOINT:
            if detail.get("head_seq") != record.seq - 1 or detail.get("head_digest") != record.prev:
                raise _FoundError(
                    Finding(
                        record.seq,
                        Problem.EDITED,
                        f"checkpoint {record.seq} does not name the record before it",
                        _where(line),
                    )
                )
            self.checkpoints += 1
        elif record.event is EventType.LOG_SEGMENT_DROPPED:
            self.drops.add((int(detail.get("last_seq") or 0), str(detail.get("last_digest"))))
        if self.checkpoint is not None and record.seq == self.checkpoint.seq:
            if record.digest != self.checkpoint.digest:
                raise _FoundError(
                    Finding(
                        record.seq,
                        Problem.EDITED,
                        f"record {record.seq} differs from the trusted checkpoint",
                        _where(line),
                    )
                )
            self.anchored = True

    def finish(self) -> None:
        if self.bad_mac is not None:
            raise _FoundError(
                Finding(
                    self.bad_mac.seq,
                    Problem.BAD_MAC,
                    f"record {self.bad_mac.seq} has a bad MAC (re-sealed, forged, or wrong key)",
                )
            )
        if not self.records:
            raise _FoundError(Finding(1, Problem.MISSING, "the log holds no records"))
        last = self.expected - 1
        if self.checkpoint is not None and not self.anchored:
            raise _FoundError(
                Finding(
                    last + 1,
                    Problem.TRUNCATED,
                    f"the log ends at record {last} but the checkpoint vouches for record "
                    f"{self.checkpoint.seq}",
                )
            )
        if self.first > 1 and (self.start_link[1], self.start_link[0]) not in self.drops:
            raise _FoundError(
                Finding(
                    1,
                    Problem.MISSING,
                    f"records 1..{self.first - 1} are missing and no "
                    "log_segment_dropped record accounts for them",
                )
            )


def load_checkpoint(source: Path, key: bytes | None = None) -> Record:
    """Return the last checkpoint record in ``source`` (a file, a log directory or a copy).

    With ``key`` (the initial key), its MAC is checked too.

    Raises:
        ValueError: No checkpoint in ``source``, or its MAC is bad.
    """
    found: Record | None = None
    for line in iter_lines(source):
        try:
            record = decode_frame(line.data).record
        except FrameError:
            continue
        if record.event is EventType.LOG_CHECKPOINT:
            found = record
    if found is None:
        raise ValueError(f"{source}: holds no checkpoint record")
    if key is not None:
        mac = hmac.digest(key_at(key, found.seq), bytes.fromhex(found.digest), "sha256").hex()
        if not hmac.compare_digest(mac, found.mac):
            raise ValueError(f"{source}: checkpoint {found.seq} has a bad MAC")
    return found


def verify(source: Path, *, key: bytes | None = None, checkpoint: Record | None = None) -> VerifyReport:
    """Verify a log directory, a segment, or an exported/collected copy.

    Args:
        source: What to check.
        key: The auditor's initial key; without it MACs are not checked.
        checkpoint: A trusted checkpoint (see :func:`load_checkpoint`); the log
            must reach it unchanged.

    Returns:
        The report; ``report.finding`` names the first bad seq and what is wrong.
    """
    verifier = _Verifier(key, checkpoint)
    finding = None
    try:
        verifier.run(iter_lines(source))
        verifier.finish()
    except _FoundError as stop:
        finding = stop.finding
    return VerifyReport(
        records=verifier.records,
        first_seq=verifier.first,
        last_seq=verifier.expected - 1 if verifier.expected else 0,
        mac_checked=key is not None,
        checkpoints=verifier.checkpoints,
        anchored=verifier.anchored,
        finding=finding,
    )
