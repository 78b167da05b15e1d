"""The on-disk encoding of a record, and the chain, MAC and key evolution over it.

Frame format (one line per record, robust to torn writes)::

    CRC SP BODY SP MAC LF

* ``BODY`` is compact, ASCII-only JSON (non-ASCII and control characters are
  escaped, so a body never contains a newline) with a fixed key order:
  ``v, seq, ts, ev, pr, pk, ch, src, perm, res, out, det, prev``.
* ``prev`` is the hex SHA-256 of the previous record's ``BODY`` bytes (64 zeros
  for the first record of a log): the hash chain.  A record's own *digest* is
  SHA-256 of its ``BODY`` bytes exactly as stored, so nothing is ever
  re-serialised to be checked.
* ``MAC`` is the hex HMAC-SHA-256 of the record's digest under the record's
  sealing key ``k[seq]``; keys evolve one-way, ``k[seq+1] = SHA-256(EVOLVE || k[seq])``.
* ``CRC`` is 8 hex digits of the CRC-32 of ``BODY SP MAC``.  It tells a torn or
  damaged frame from a well-formed one without any key; tampering is caught by
  the chain and the MAC, not by the CRC.

A frame without its final ``LF`` is torn (a write that never completed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import json.encoder
import re
import zlib
from collections.abc import Callable
from types import MappingProxyType

from meterd.errors import SecurityLogError
from meterd.policy.request import Channel, Outcome
from meterd.record import record
from meterd.seclog.events import (
    BY_CHANNEL_NAME,
    BY_EVENT_NAME,
    BY_KIND_NAME,
    BY_OUTCOME_NAME,
    DetailValue,
    EventType,
    PrincipalKind,
    Record,
)

FORMAT_VERSION = 1
KEY_BYTES = 32
#: The ``prev`` of the first record of a log.
GENESIS = "0" * 64
#: Domain separation of the one-way key step.
EVOLVE = b"meterd-seclog-v1 evolve"
_MAC_HEX = 64
_MIN_FRAME = 8 + 1 + 2 + 1 + _MAC_HEX + 1


#: JSON string escaper to ASCII (the C one where available): a body never holds a newline.
escape_json: Callable[[str], str] = json.encoder.encode_basestring_ascii


class FrameError(SecurityLogError, ValueError):
    """A line is not a well-formed frame (bad checksum, bad JSON, wrong shape).

    Also a :class:`ValueError`, as a bad value handed to a decoder is, so callers
    that catch that keep working.
    """


@record
class Frame:
    """One decoded line: the body bytes as stored and the MAC.

    Attributes:
        body: The exact ``BODY`` bytes (what the digest and chain cover).
        mac: Hex MAC.
        record: The decoded record (its ``digest`` and ``mac`` filled in).
    """

    body: bytes
    mac: str
    record: Record


def evolve(key: bytes) -> bytes:
    """Return the next sealing key; the step cannot be reversed."""
    return hashlib.sha256(EVOLVE + key).digest()


def key_at(initial: bytes, seq: int) -> bytes:
    """Return the sealing key of record ``seq`` given the initial key (that of seq 1)."""
    key = initial
    for _ in range(seq - 1):
        key = evolve(key)
    return key


def seal(key: bytes, digest: bytes) -> str:
    """Return the hex MAC of a record digest under ``key``."""
    return hmac.digest(key, digest, "sha256").hex()


def encode_fields(  # noqa: PLR0917 - positional on the hot path (see below)
    event: str,
    principal: str,
    kind: str,
    channel: str,
    source: str,
    permission: str,
    resource: str,
    outcome: str,
    detail: str,
    /,
) -> str:
    """Return the JSON fragment of the caller-supplied fields (no braces).

    Done in the appending thread so the sealer only adds ``seq``, ``ts`` and
    ``prev``.  Built by hand with the C string escaper because it is on every
    append and ``json.dumps`` of a mapping costs several times more;
    ``event``, ``kind``, ``channel``, ``permission`` and ``outcome`` are enum
    values (no escaping needed) and ``detail`` is the already encoded JSON
    object (see :func:`meterd.seclog.entry.encode_detail`).  Positional only:
    keyword matching of nine arguments would cost more than the encoding.
    """
    esc = escape_json
    return (
        f'"ev":"{event}","pr":{esc(principal)},"pk":"{kind}","ch":"{channel}","src":{esc(source)},'
        f'"perm":"{permission}","res":{esc(resource)},"out":"{outcome}","det":{detail}'
    )


def make_body(seq: int, ts: str, fields: bytes, prev: str) -> bytes:
    """Return the ``BODY`` bytes of a record (the reference the C sealer must match)."""
    head = f'{{"v":{FORMAT_VERSION},"seq":{seq},"ts":"{ts}",'.encode("ascii")
    return head + fields + f',"prev":"{prev}"}}'.encode("ascii")


def make_frame(body: bytes, mac: str) -> bytes:
    """Return the full line for a body and its MAC."""
    tail = body + b" " + mac.encode("ascii")
    return b"%08x %s\n" % (zlib.crc32(tail), tail)


def decode_frame(line: bytes) -> Frame:
    """Decode one complete line (with or without its ``LF``).

    Raises:
        FrameError: The checksum, the JSON or a field is wrong.
    """
    if line.endswith(b"\n"):
        line = line[:-1]
    if len(line) < _MIN_FRAME or line[8:9] != b" " or line[-_MAC_HEX - 1 : -_MAC_HEX] != b" ":
        raise FrameError("not a record frame")
    tail = line[9:]
    # The field is compared as written (eight lowercase hex digits), not parsed:
    # int(..., 16) would also take "0X", "+", "_" or upper case, so a byte of
    # the field could change and the record still pass.
    if b"%08x" % zlib.crc32(tail) != line[:8]:
        raise FrameError("checksum mismatch")
    body = tail[: -_MAC_HEX - 1]
    mac = tail[-_MAC_HEX:].decode("ascii", "replace")
    return Frame(body, mac, decode_body(body, mac))


#: The head every writer's body starts with: version 1, a seq without leading zeros, a plain ASCII time.
HEAD = re.compile(rb'\{"v":1,"seq":([1-9][0-9]{0,17}),"ts":"([\x20\x21\x23-\x5b\x5d-\x7e]*)",')
PREV_KEY = b',"prev":"'
_TAIL = len(PREV_KEY) + 64 + 2
_HEX64 = re.compile(rb"[0-9a-f]{64}")
_MIDDLE_KEYS = ("ev", "pr", "pk", "ch", "src", "perm", "res", "out", "det")
#: Keys of the head and tail: a middle that repeats one would win over them in a full parse.
_OUTER_KEYS = frozenset({"v", "seq", "ts", "prev"})
_Middle = tuple[
    EventType, str, PrincipalKind, Channel, str, str, str, Outcome, MappingProxyType[str, DetailValue]
]
#: Decoded middles by their bytes: a log repeats the same request (and detail) over and over.
_middles: dict[bytes, _Middle] = {}
_MAX_MIDDLES = 4096


def _middle(middle: bytes) -> _Middle | None:
    """Decode the fields between ``ts`` and ``prev``, or None when only a full parse can tell."""
    try:
        raw = json.loads(b"{" + middle + b"}")
        if not isinstance(raw, dict) or not _OUTER_KEYS.isdisjoint(raw):
            return None
        ev, pr, pk, ch, src, perm, res, out, det = (raw[k] for k in _MIDDLE_KEYS)
        if not isinstance(det, dict) or not all(isinstance(v, str) for v in (pr, src, perm, res)):
            return None
        fields = (
            BY_EVENT_NAME[ev],
            pr,
            BY_KIND_NAME[pk],
            BY_CHANNEL_NAME[ch],
            src,
            perm,
            res,
            BY_OUTCOME_NAME[out],
            MappingProxyType(det),
        )
    except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if len(_middles) >= _MAX_MIDDLES:
        _middles.clear()
    _middles[middle] = fields
    return fields


def layout(body: bytes) -> tuple[int, bytes, bytes] | None:
    """Split a body in the writer's exact layout into its seq, ``ts`` and the fields between.

    The fields between ``ts`` and ``prev`` (the *middle*) are not checked here
    (see :func:`middle_event`), nor is ``prev`` (the last 64 characters before
    the closing ``"}``).

    Returns:
        ``(seq, ts, middle)``, or None for a body in any other layout (only a full parse can tell).
    """
    head = HEAD.match(body)
    if head is None or body[-_TAIL : -_TAIL + len(PREV_KEY)] != PREV_KEY or body[-2:] != b'"}':
        return None
    return int(head[1]), head[2], body[head.end() : -_TAIL]


def middle_event(middle: bytes) -> EventType | None:
    """Return the event type of a valid middle (see :func:`layout`), or None if only a full parse can tell."""
    fields = _middles.get(middle) or _middle(middle)
    return None if fields is None else fields[0]


def decode_body(body: bytes, mac: str = "") -> Record:
    """Decode a ``BODY`` into a :class:`Record`.

    Bodies in the writer's exact layout take a fast path: the head and
    ``prev`` are matched as bytes and the fields between them are parsed once
    per distinct byte string (cached).  That is the same result as parsing the
    whole body: ``{"v":1,"seq":N,"ts":"T",`` + M + ``,"prev":"H"}`` is the
    object of ``{M}``'s members plus those four whenever ``{M}`` parses and
    names none of the four (JSON's grammar is unambiguous).  Anything else,
    including every malformed body, takes the full parse.

    Raises:
        FrameError: The body is not a valid record.
    """
    head = HEAD.match(body)
    if head is not None and body[-_TAIL : -_TAIL + len(PREV_KEY)] == PREV_KEY and body[-2:] == b'"}':
        prev = body[-66:-2]
        middle = body[head.end() : -_TAIL]
        fields = _middles.get(middle) or _middle(middle)
        if fields is not None and _HEX64.fullmatch(prev):
            ev, pr, pk, ch, src, perm, res, out, det = fields
            return Record(
                int(head[1]),
                head[2].decode("ascii"),
                ev,
                pr,
                pk,
                ch,
                src,
                perm,
                res,
                out,
                det,
                prev.decode("ascii"),
                hashlib.sha256(body).hexdigest(),
                mac,
            )
    return _decode_full(body, mac)


def _decode_full(body: bytes, mac: str) -> Record:
    try:
        raw = json.loads(body)
        if not isinstance(raw, dict) or raw.get("v") != FORMAT_VERSION:
            raise FrameError("unknown record version")
        detail = raw["det"]
        if not isinstance(detail, dict):
            raise FrameError("detail is not a mapping")
        seq = raw["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise FrameError("bad sequence number")
        strings = [raw[k] for k in ("ts", "pr", "src", "perm", "res", "prev")]
        if not all(isinstance(s, str) for s in strings):
            raise FrameError("a text field is not a string")
        return Record(
            seq=seq,
            time=raw["ts"],
            event=BY_EVENT_NAME[raw["ev"]],
            principal=raw["pr"],
            principal_kind=BY_KIND_NAME[raw["pk"]],
            channel=BY_CHANNEL_NAME[raw["ch"]],
            source=raw["src"],
            permission=raw["perm"],
            resource=raw["res"],
            outcome=BY_OUTCOME_NAME[raw["out"]],
            detail=MappingProxyType(detail),
            prev=raw["prev"],
            digest=hashlib.sha256(body).hexdigest(),
            mac=mac,
        )
    except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FrameError(f"bad record body ({type(e).__name__})") from None


def find_frame(line: bytes) -> bytes | None:
    """Return the frame embedded in a line of another format (RFC 5424), or None.

    The frame is the suffix starting eight hex digits and a space before the
    first ``{``; syslog headers and our structured data contain no ``{``.
    """
    brace = line.find(b"{")
    if brace < 9 or line[brace - 1 : brace] != b" ":
        return None
    start = brace - 9
    try:
        int(line[start : start + 8], 16)
    except ValueError:
        return None
    return line[start:].rstrip(b"\r\n")
