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
    * a log that starts after seq 1 (oldest segments dropped at capacity)
      must hold the ``log_segment_dropped`` record that vouches for the start;
    * with an *anchor* (the newest record of a trusted copy: an export, a
      collector's file, see :func:`load_anchor`), the log must not end before
      the anchor's seq (else *truncated*) and must hold the anchor's very
      record (else *edited*); a log whose oldest segments were dropped since
      the copy was made must still hold the anchor, or start right after it
      with a link to it (else *missing*: the copy cannot vouch for the log).

Why the anchor alone vouches for every record the copy holds: a record's
digest is SHA-256 of its body, and the body holds ``prev``, the previous
record's digest (see :mod:`meterd.seclog.codec`).  A log that holds the
anchor's digest at the anchor's seq, and whose links hold from its first
record up to there, therefore holds byte for byte the same records as the
copy at every seq it has up to the anchor; differing anywhere would need a
SHA-256 collision.  So an attacker who controls the meter's log but not the
copy can neither cut records the copy holds (the log would end early or lack
the anchor) nor change one (the anchor's digest would differ); what the log
no longer holds at its start must be accounted for by a ``log_segment_dropped``
record, as without an anchor, and those records are in the copy anyway.

Without a key, anyone who rewrites the whole tail consistently (recomputing
checksums and links) is not caught: only the MACs, or a copy held
elsewhere, tell authentic records from rewritten ones.
"""

from __future__ import annotations

import hmac
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

from meterd.errors import SecurityLogError
from meterd.seclog.codec import GENESIS, FrameError, decode_frame, evolve, key_at
from meterd.seclog.events import EventType, Record
from meterd.seclog.parts import joined, scan_log
from meterd.seclog.reader import iter_frames, iter_lines
from meterd.seclog.report import Finding, Problem, VerifyReport
from meterd.seclog.scan import PROGRESS_EVERY, Span
from meterd.seclog.segments import Line

__all__ = [
    "LOOKAHEAD",
    "Finding",
    "Problem",
    "Span",
    "VerifyReport",
    "joined",
    "load_anchor",
    "verify",
    "verify_records",
]

#: How far ahead a missing record is looked for before calling it missing, not reordered.
LOOKAHEAD = 100_000


class _FoundError(SecurityLogError):
    def __init__(self, finding: Finding) -> None:
        self.finding = finding


def _where(line: Line) -> str:
    return f"{line.path}:{line.offset}"


class _Verifier:
    def __init__(
        self,
        key: bytes | None,
        anchor: Record | None,
        visit: Callable[[Record], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.visit = visit
        self.progress = progress
        self.initial = key
        self.key = b""
        self.anchor = anchor
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
        if self.anchor is not None and record.seq > self.anchor.seq:
            self._start_after_anchor(record, self.anchor)

    def _start_after_anchor(self, record: Record, anchor: Record) -> None:
        """The log dropped every record the copy holds: it must link straight to the copy's head."""
        if record.seq > anchor.seq + 1:
            raise _FoundError(
                Finding(
                    anchor.seq + 1,
                    Problem.MISSING,
                    f"the log starts at record {record.seq} but the trusted copy ends at record "
                    f"{anchor.seq}: records {anchor.seq + 1}..{record.seq - 1} are in neither, so "
                    "the copy cannot vouch for the log (use a newer copy)",
                )
            )
        if record.prev != anchor.digest:
            raise _FoundError(
                Finding(
                    record.seq,
                    Problem.EDITED,
                    f"the log's first record {record.seq} does not follow record {anchor.seq} "
                    "of the trusted copy",
                )
            )
        self.anchored = True

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
        if self.visit is not None:
            self.visit(record)
        if self.progress is not None and not self.records % PROGRESS_EVERY:
            self.progress(self.records)

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
        if self.anchor is not None and record.seq == self.anchor.seq:
            # One digest stands for every record before it (see the module docstring).
            if record.digest != self.anchor.digest:
                raise _FoundError(
                    Finding(
                        record.seq,
                        Problem.EDITED,
                        f"record {record.seq} differs from the trusted copy's: the log was changed "
                        f"at or before record {record.seq}",
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
        if self.anchor is not None and not self.anchored:
            raise _FoundError(
                Finding(
                    last + 1,
                    Problem.TRUNCATED,
                    f"the log ends at record {last} but the trusted copy holds records up to "
                    f"{self.anchor.seq}",
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


def load_anchor(source: Path, key: bytes | None = None) -> Record:
    """Return the newest record of a trusted copy of the log: what verification anchors to.

    ``source`` is anything :func:`~meterd.seclog.reader.iter_lines` reads: the
    output of ``meterctl log export`` (filtered or not), a collector's file, a
    copied segment or log directory, or a file holding one checkpoint record.
    Any record anchors, not only a checkpoint: the chain makes the newest one
    stand for all before it.  Damaged lines are skipped (the copy is trusted;
    a torn last line of a collector's file is not evidence).

    With ``key`` (the initial key), its MAC is checked too.

    Raises:
        ValueError: No record in ``source``, two different records with its
            highest seq, or a bad MAC.
    """
    head: Record | None = None
    for frame in iter_frames(source):
        record = frame.record
        if head is None or record.seq > head.seq:
            head = record
        elif record.seq == head.seq and record.digest != head.digest:
            raise ValueError(f"{source}: holds two different records {record.seq}")
    if head is None:
        raise ValueError(f"{source}: holds no record")
    if key is not None:
        mac = hmac.digest(key_at(key, head.seq), bytes.fromhex(head.digest), "sha256").hex()
        if not hmac.compare_digest(mac, head.mac):
            raise ValueError(f"{source}: record {head.seq} has a bad MAC")
    return head


def verify(
    source: Path,
    *,
    key: bytes | None = None,
    anchor: Record | None = None,
    visit: Callable[[Record], None] | None = None,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify a log directory, a segment, or an exported/collected copy.

    A log directory is first checked by the lean pass (:mod:`meterd.seclog.parts`,
    in ``workers`` processes when it is large), which passes it only when this
    reference verifier would; when it does not, or for anything else (a file,
    an anchor, a ``visit``), the reference verifier reads it record by record
    and names the first problem.

    Args:
        source: What to check.
        key: The auditor's initial key; without it MACs are not checked.
        anchor: The newest record of a trusted copy (see :func:`load_anchor`):
            the log must hold it unchanged, or have dropped it in a recorded
            rotation and start right after it.
        visit: Called with each record once its checks passed, in order, so a
            tool can read a log and verify it in one pass.  A record with a
            bad MAC is visited before the problem is reported (it is noticed
            at the next record): a caller must discard what it collected
            when the report is not ok.
        workers: Processes the lean pass may fork (1: none; never from the daemon).
        progress: Called now and then with the records checked so far.

    Returns:
        The report; ``report.finding`` names the first bad seq and what is wrong.
    """
    if visit is None and anchor is None and source.is_dir():
        try:
            report, _ = scan_log(source, key=key, workers=workers, progress=progress)
        except OSError:
            report = None  # the reference reads it again and says what is wrong
        if report is not None:
            return report
    return verify_records(source, key=key, anchor=anchor, visit=visit, progress=progress)


def verify_records(
    source: Path,
    *,
    key: bytes | None = None,
    anchor: Record | None = None,
    visit: Callable[[Record], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """The reference verifier: :func:`verify` record by record, naming the first problem (same arguments)."""
    verifier = _Verifier(key, anchor, visit, progress)
    finding = None
    try:
        verifier.run(iter_lines(source))
        verifier.finish()
    except _FoundError as stop:
        finding = stop.finding
    if progress is not None:
        progress(verifier.records)
    return VerifyReport(
        records=verifier.records,
        first_seq=verifier.first,
        last_seq=verifier.expected - 1 if verifier.expected else 0,
        mac_checked=key is not None,
        checkpoints=verifier.checkpoints,
        anchored=verifier.anchored,
        finding=finding,
    )
