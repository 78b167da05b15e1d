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
import itertools
import operator
import zlib
from binascii import hexlify
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from meterd.errors import SecurityLogError
from meterd.record import record
from meterd.seclog.codec import (
    EVOLVE,
    GENESIS,
    HEAD,
    KEY_BYTES,
    PREV_KEY,
    FrameError,
    decode_body,
    key_at,
    middle_event,
)
from meterd.seclog.events import EventType

#: Bytes read at a time.
_BLOCK = 4 << 20
#: Records between two progress reports.
PROGRESS_EVERY = 4096
#: Distinct contents remembered as valid before the memory is cleared.
_MAX_KNOWN = 1 << 16
_HEX = frozenset(b"0123456789abcdef")
#: The bytes a time may hold (codec.HEAD's class): deleting them leaves nothing of a valid one.
_TS_BYTES = bytes([0x20, 0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F)])
#: HMAC's pads (RFC 2104) as translation tables, and the zeros that fill a key to SHA-256's block.
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_ZEROS = bytes(64 - KEY_BYTES)
#: The key step's constant part, hashed once (see codec.evolve).
_EVOLVING = hashlib.sha256(EVOLVE)
_digest = type(_EVOLVING).digest
#: ``bytes[slice]`` and ``bytes[int]`` as functions, for ``map``.
_cut: Callable[[bytes, slice], bytes] = operator.getitem  # type: ignore[assignment]  # one overload of many
_byte: Callable[[bytes, int], int] = operator.getitem
_repeat = itertools.repeat
#: Where a frame's parts are: ``CRC SP BODY SP MAC``.
_CRC = slice(0, 8)
_CRC_TEXT = b"%08x"
_AFTER_CRC = slice(9, None)
_BODY = slice(0, -65)
_MAC = slice(-64, None)
_HEAD_FORMAT = b'{"v":1,"seq":%d,"ts":"'
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


@record
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


def scan(
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
    run = _Run(key)
    ok = True
    try:
        for block in _lines(pieces):
            for at in range(0, len(block), PROGRESS_EVERY):
                chunk = block[at : at + PROGRESS_EVERY]
                times, middles = run.check(chunk, state)
                first = run.expected - len(times)
                if collect and contents is not None:
                    contents = _count(contents, first, times, middles, since=since, until=until)
                if progress is not None:
                    progress(run.count)
    except (_NotOkError, ValueError, FrameError):
        ok = False
    count, expected = run.count, run.expected
    if progress is not None:
        progress(count)
    span = Span(
        ok,
        count,
        expected - count if count else 0,
        state.first_prev,
        expected - 1 if count else 0,
        run.tail[len(_PREV_KEY) : -2].decode("ascii") if count else GENESIS,
        state.checkpoints,
        frozenset(state.drops),
    )
    return span, contents if collect else None


class _Run:
    """The checks of :func:`scan`, a chunk of lines at a time, and where the run stands.

    Each check is one C-level pass over the chunk (``map``, list comparisons,
    one join), not Python bytecode per record: per record that is what costs,
    not the hashing.  A chunk passes whole or the run is not ok.
    """

    def __init__(self, key: bytes | None) -> None:
        self.initial = key
        self.sealing = b""  # the key of record ``expected``
        self.expected = 0  # the next record's seq (0: none seen yet)
        self.tail = b""  # the next body's end: ``,"prev":"`` + the last digest + ``"}``
        self.count = 0
        self.known: dict[bytes, EventType] = {}

    def check(self, lines: list[bytes], state: _State) -> tuple[list[bytes], list[bytes]]:
        """Check ``lines``, the run's next; return their times and middles.

        Raises:
            _NotOkError: Anything is not exactly what the writer writes.
        """
        n = len(lines)
        if not n:
            return [], []
        bodies = _bodies(lines)
        if not self.expected:
            self.expected, self.tail = _first(bodies[0], state)
            if self.initial is not None:
                self.sealing = key_at(self.initial, self.expected)
        first = self.expected
        # codec.layout, inline: the head (this seq, a 27-byte time), the tail and the chain
        # in the writer's exact layout; anything else goes to the reference verifier.
        heads = list(map(_HEAD_FORMAT.__mod__, range(first, first + n)))
        if not all(map(bytes.startswith, bodies, heads)):
            raise _NotOkError("head")
        starts = list(map(len, heads))
        if [b[s + 27 : s + 29] for b, s in zip(bodies, starts, strict=True)] != [b'",'] * n:
            raise _NotOkError("time")
        times = [b[s : s + 27] for b, s in zip(bodies, starts, strict=True)]
        if b"".join(times).translate(None, _TS_BYTES):
            raise _NotOkError("time")
        digests = list(map(_digest, map(hashlib.sha256, bodies)))
        hexes = list(map(hexlify, digests))
        links = [self.tail, *[_PREV_KEY + h + b'"}' for h in hexes[:-1]]]
        if list(map(bytes.endswith, bodies, links)) != [True] * n:
            raise _NotOkError("chain")
        middles = [b[s + 29 : -75] for b, s in zip(bodies, starts, strict=True)]
        events = list(map(self.known.get, middles))
        if None in events:
            events = list(map(self._event, middles))
        if self.initial is not None:
            self._check_macs(lines, digests)
        if EventType.LOG_CHECKPOINT in events or EventType.LOG_SEGMENT_DROPPED in events:
            for body, event in zip(bodies, events, strict=True):
                if event is EventType.LOG_CHECKPOINT or event is EventType.LOG_SEGMENT_DROPPED:
                    _check_special(body, event, state)
        self.tail = _PREV_KEY + hexes[-1] + b'"}'
        self.expected += n
        self.count += n
        return times, middles

    def _event(self, middle: bytes) -> EventType:
        event = self.known.get(middle)
        if event is None:
            event = middle_event(middle)
            if event is None:
                raise _NotOkError("fields")
            if len(self.known) >= _MAX_KNOWN:
                self.known.clear()
            self.known[middle] = event
        return event

    def _check_macs(self, lines: list[bytes], digests: list[bytes]) -> None:
        """Each MAC under the evolving key: HMAC-SHA-256 by its definition (RFC 2104).

        For a 32-byte key: ``H(K^opad || H(K^ipad || m))`` with ``K`` zero-filled to
        the block.  The key changes on every record, so nothing is precomputed,
        and ``hmac.digest`` costs twice this per call.  The MACs of the chunk are
        compared in one constant-time comparison.
        """
        keys = []
        sealing = self.sealing
        evolving = _EVOLVING
        for _ in digests:
            keys.append(sealing)
            step = evolving.copy()
            step.update(sealing)
            sealing = step.digest()
        padded = list(map(bytes.__add__, keys, _repeat(_ZEROS)))
        inner = map(
            _digest,
            map(hashlib.sha256, map(bytes.__add__, map(bytes.translate, padded, _repeat(_IPAD)), digests)),
        )
        outer = map(bytes.__add__, map(bytes.translate, padded, _repeat(_OPAD)), inner)
        macs = b"".join(map(hexlify, map(_digest, map(hashlib.sha256, outer))))
        if not hmac.compare_digest(macs, b"".join(map(_cut, lines, _repeat(_MAC)))):
            raise _NotOkError("MAC")
        self.sealing = sealing


def _bodies(lines: list[bytes]) -> list[bytes]:
    """decode_frame's checks on every line, a frame's shape then its checksum; return the bodies."""
    if min(map(len, lines)) < _MIN_FRAME or {
        *map(_byte, lines, _repeat(8)),
        *map(_byte, lines, _repeat(-65)),
    } != {32}:
        raise _NotOkError("not a frame")
    after = list(map(_cut, lines, _repeat(_AFTER_CRC)))
    # Compared as written (eight lowercase hex digits, as decode_frame does), not parsed:
    # int(..., 16) would take the same value in upper case, a changed byte unnoticed.
    if list(map(_CRC_TEXT.__mod__, map(zlib.crc32, after))) != list(map(_cut, lines, _repeat(_CRC))):
        raise _NotOkError("checksum")
    return list(map(_cut, after, _repeat(_BODY)))


def _count(
    contents: Contents, first: int, times: list[bytes], middles: list[bytes], *, since: bytes, until: bytes
) -> Contents | None:
    """Count a checked chunk's records in the window by content (None: too many distinct ones)."""
    for seq, ts, middle in zip(itertools.count(first), times, middles, strict=False):
        if (since and ts < since) or (until and ts >= until):
            continue
        seen = contents.get(middle)
        if seen is None:
            if len(contents) >= MAX_CONTENTS:
                return None
            time = ts.decode("ascii")
            listed = [(seq, time)] if any(mark in middle for mark in _LISTED) else None
            contents[middle] = Occurrences(1, seq, time, seq, time, listed)
        else:
            seen.count += 1
            seen.last_seq = seq
            seen.last_time = ts.decode("ascii")
            if seen.each is not None:
                seen.each.append((seq, seen.last_time))
    return contents


def _first(body: bytes, state: _State) -> tuple[int, bytes]:
    """The seq of a run's first record and the tail its body must end with (its ``prev`` unchecked)."""
    head = HEAD.match(body)
    if head is None:
        raise _NotOkError("layout")
    seq = int(head[1])
    prev = GENESIS_BYTES if seq == 1 else body[-66:-2]
    if not _HEX.issuperset(prev) or len(prev) != 64:
        raise _NotOkError("prev")
    state.first_prev = prev.decode("ascii")
    return seq, _PREV_KEY + prev + b'"}'


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
