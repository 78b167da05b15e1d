"""The lean pass of verification: a run of lines checked without building records.

:func:`scan` applies the checks of the reference verifier
(:mod:`meterd.seclog.verify`) to a contiguous run of a log directory's lines:
complete lines, checksums, sequence numbers rising by one, the chain of
``prev`` digests, the MACs under the evolving key, checkpoints naming the
record before them, and the ``log_segment_dropped`` records that vouch for a
log's start.  It never names a problem: anything that is not exactly what the
writer produces (a damaged or torn line, a body outside the writer's layout, a
gap, a bad MAC) makes the run not ok, and the caller runs the reference
verifier, which names it.  So a scan passes a run only if the reference would
pass the same lines from the same start, and it is cheaper because a record is
never turned into a :class:`~meterd.seclog.events.Record`: the fields between
``ts`` and ``prev`` of a log repeat (the same request over and over) and are
decoded once per distinct byte string.

The same pass can count a window's records by those distinct contents
(:class:`Contents`), which is all a review needs (:mod:`meterd.review.source`).

Like the reference verifier, this module uses only ``hashlib``, ``hmac`` and
``zlib``, never the writer's C sealer: a sealer fault cannot vouch for itself.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from binascii import hexlify
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from meterd.errors import SecurityLogError
from meterd.seclog.codec import EVOLVE, GENESIS, HEAD, PREV_KEY, FrameError, decode_body, key_at, middle_event
from meterd.seclog.events import EventType

#: Bytes read at a time.
_BLOCK = 4 << 20
#: Records between two progress reports.
PROGRESS_EVERY = 4096
#: Distinct contents remembered as valid before the memory is cleared.
_MAX_KNOWN = 1 << 16
_HEX = frozenset(b"0123456789abcdef")
#: Contents whose every occurrence the review lists (policy changes, ended dual-control
#: requests): any content that mentions them, wherever in its fields.
_LISTED = (b"policy_change", b"dual_control")
#: Distinct contents a window may hold before a scan stops counting them (memory stays bounded).
MAX_CONTENTS = 1 << 17
_MIN_FRAME = 8 + 1 + 2 + 1 + 64 + 1
GENESIS_BYTES = GENESIS.encode("ascii")
#: The slices in :func:`scan` hard-code the tail's layout: this (9 bytes), 64 hex digits, ``"}``.
_PREV_KEY = PREV_KEY
if len(_PREV_KEY) != 9:
    raise ImportError("meterd.seclog.scan does not match the codec's layout")


@dataclass(slots=True)
class Occurrences:
    """Where one distinct content occurs in the window.

    Attributes:
        count: How many records.
        first_seq: The first one's seq.
        first_time: Its time.
        last_seq: The last one's seq.
        last_time: Its time.
        each: Every ``(seq, time)``, for contents a review lists one by one (else None).
    """

    count: int
    first_seq: int
    first_time: str
    last_seq: int
    last_time: str
    each: list[tuple[int, str]] | None = None


#: A window's records by distinct content (the bytes between ``ts`` and ``prev``), in log
#: order of first occurrence.
Contents = dict[bytes, Occurrences]


@dataclass(frozen=True, slots=True)
class Span:
    """What a scan found in one contiguous run of a log.

    Attributes:
        ok: True when every record of the run passed (a run never holds the whole story:
            its first link, and the log's start, are the caller's to check).
        records: Records checked.
        first_seq: Seq of its first record (0 if none).
        first_prev: That record's ``prev``: must be the previous run's ``last_digest``.
        last_seq: Seq of its last record.
        last_digest: That record's digest.
        checkpoints: Consistent checkpoint records.
        drops: ``(last_seq, last_digest)`` of its ``log_segment_dropped`` records.
    """

    ok: bool
    records: int
    first_seq: int
    first_prev: str
    last_seq: int
    last_digest: str
    checkpoints: int
    drops: frozenset[tuple[int, str]]


@dataclass(slots=True)
class _State:
    first_prev: str = GENESIS
    checkpoints: int = 0
    drops: set[tuple[int, str]] = field(default_factory=set)


class _NotOkError(SecurityLogError):
    """Internal: the run is not what the writer produces (the reference verifier says what)."""


def _lines(pieces: list[tuple[Path, int, int]]) -> Iterator[list[bytes]]:
    """Yield the complete lines of ``(path, start, end)`` byte ranges, a block at a time."""
    for path, start, end in pieces:
        with open(path, "rb", buffering=0) as f:
            f.seek(start)
            left = end - start
            rest = b""
            while left > 0:
                data = f.read(min(_BLOCK, left))
                if not data:
                    break
                left -= len(data)
                lines = (rest + data).split(b"\n")
                rest = lines.pop()
                yield lines
            if rest:
                raise _NotOkError("torn line")  # a last line without its LF


def scan(  # noqa: PLR0912, PLR0915 - one loop: every call per record costs
    pieces: list[tuple[Path, int, int]],
    *,
    key: bytes | None = None,
    window: tuple[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Span, Contents | None]:
    """Check a contiguous run of a log directory's lines: ``(segment, start, end)`` byte ranges in order.

    Args:
        pieces: The run; ranges start and end at line boundaries.
        key: The auditor's initial key (the key of seq 1); MACs are checked with it.
        window: ``(since, until)`` in the log's time format (empty: open) to count
            the window's records by content; None counts nothing.
        progress: Called with the records checked so far, every :data:`PROGRESS_EVERY`
            and at the end.

    Returns:
        The span (``ok`` False when anything is not as the writer writes it), and
        with a window the window's contents, or None when the window holds more than
        :data:`MAX_CONTENTS` distinct ones (read it record by record instead).
    """
    state = _State()
    collect = window is not None
    since, until = (
        (window[0].encode("ascii"), window[1].encode("ascii")) if window is not None else (b"", b"")
    )
    contents: Contents | None = {}
    known: dict[bytes, EventType] = {}
    sha256 = hashlib.sha256
    mac_of = hmac.digest
    same = hmac.compare_digest
    crc32 = zlib.crc32
    match_head = HEAD.match
    sealing = b""
    expected = 0
    prev = b""
    count = 0
    ok = True
    try:
        for block in _lines(pieces):
            for line in block:
                # decode_frame's checks, then decode_body's fast path (the writer's exact layout).
                if len(line) < _MIN_FRAME or line[8] != 32 or line[-65] != 32:
                    raise _NotOkError("not a frame")
                tail = line[9:]
                if b"%08x" % crc32(tail) != line[:8]:  # as written, like decode_frame
                    raise _NotOkError("checksum")
                body = tail[:-65]
                # codec.layout, inline: the head and tail in the writer's exact layout.
                head = match_head(body)
                if head is None or body[-75:-66] != _PREV_KEY or body[-2:] != b'"}':
                    raise _NotOkError("layout")
                seq = int(head[1])
                ts = head[2]
                middle = body[head.end() : -75]
                if seq != expected:
                    if expected:
                        raise _NotOkError("order")
                    expected = seq
                    prev = GENESIS_BYTES if seq == 1 else body[-66:-2]
                    if not _HEX.issuperset(prev):
                        raise _NotOkError("prev")
                    state.first_prev = prev.decode("ascii")
                    if key is not None:
                        sealing = key_at(key, seq)
                if body[-66:-2] != prev:
                    raise _NotOkError("chain")
                event = known.get(middle)
                if event is None:
                    event = middle_event(middle)
                    if event is None:
                        raise _NotOkError("fields")
                    if len(known) >= _MAX_KNOWN:
                        known.clear()
                    known[middle] = event
                digest = sha256(body).digest()
                if key is not None:
                    if not same(hexlify(mac_of(sealing, digest, "sha256")), tail[-64:]):
                        raise _NotOkError("MAC")
                    sealing = sha256(EVOLVE + sealing).digest()
                if event is EventType.LOG_CHECKPOINT or event is EventType.LOG_SEGMENT_DROPPED:
                    _check_special(body, event, state)
                prev = hexlify(digest)
                expected += 1
                count += 1
                if (
                    collect
                    and contents is not None
                    and not ((since and ts < since) or (until and ts >= until))
                ):
                    seen = contents.get(middle)
                    if seen is None:
                        if len(contents) >= MAX_CONTENTS:
                            contents = None
                            continue
                        time = ts.decode("ascii")
                        listed = [(seq, time)] if any(mark in middle for mark in _LISTED) else None
                        contents[middle] = Occurrences(1, seq, time, seq, time, listed)
                    else:
                        seen.count += 1
                        seen.last_seq = seq
                        seen.last_time = ts.decode("ascii")
                        if seen.each is not None:
                            seen.each.append((seq, seen.last_time))
                if progress is not None and not count % PROGRESS_EVERY:
                    progress(count)
    except (_NotOkError, ValueError, FrameError):
        ok = False
    if progress is not None:
        progress(count)
    span = Span(
        ok,
        count,
        expected - count if count else 0,
        state.first_prev,
        expected - 1 if count else 0,
        prev.decode("ascii") if count else GENESIS,
        state.checkpoints,
        frozenset(state.drops),
    )
    return span, contents if collect else None


def _check_special(body: bytes, event: EventType, state: _State) -> None:
    """A checkpoint must name the record before it; a drop record vouches for a start."""
    record = decode_body(body)
    detail = record.detail
    if event is EventType.LOG_CHECKPOINT:
        if detail.get("head_seq") != record.seq - 1 or detail.get("head_digest") != record.prev:
            raise _NotOkError("checkpoint")
        state.checkpoints += 1
    else:
        state.drops.add((int(detail.get("last_seq") or 0), str(detail.get("last_digest"))))
