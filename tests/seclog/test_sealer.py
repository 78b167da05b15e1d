"""The C sealer against the Python codec (the verifier's reference), byte for byte."""

from __future__ import annotations

import hashlib
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from meterd._seal import lib

from meterd.policy.request import Channel, Outcome
from meterd.seclog.codec import GENESIS, decode_frame, evolve, make_body, make_frame, seal
from meterd.seclog.entry import make_entry
from meterd.seclog.errors import LogUnavailableError
from meterd.seclog.events import EventType
from meterd.seclog.sealer import frames_size, seal_batch

PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)
TS = "2026-11-22T10:00:00.123456Z"


def reference(fields: list[bytes], seq: int, prev: bytes, key: bytes, ts: str) -> tuple[bytes, bytes, bytes]:
    """Seal with the Python codec: what the verifier checks every frame against."""
    frames = []
    prev_hex = prev.hex()
    for i, item in enumerate(fields):
        body = make_body(seq + 1 + i, ts, item, prev_hex)
        digest = hashlib.sha256(body).digest()
        frames.append(make_frame(body, seal(key, digest)))
        prev_hex, key = digest.hex(), evolve(key)
    return b"".join(frames), bytes.fromhex(prev_hex), key


@settings(max_examples=300, deadline=None)
@given(
    fields=st.lists(PRINTABLE.map(str.encode), max_size=20),
    seq=st.integers(0, 2**63),
    prev=st.binary(min_size=32, max_size=32),
    key=st.binary(min_size=32, max_size=32),
)
def test_c_sealer_matches_the_python_codec(fields: list[bytes], seq: int, prev: bytes, key: bytes) -> None:
    assert seal_batch(fields, seq, prev, key, TS.encode()) == reference(fields, seq, prev, key, TS)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.lists(PRINTABLE.map(str.encode), max_size=40),
    seq=st.one_of(
        st.integers(0, 2**40),
        # Runs that cross from one digit count to the next.
        st.sampled_from([10**k - d for k in range(1, 19) for d in (1, 2, 7)]),
    ),
)
def test_frames_size_is_what_the_sealer_writes(fields: list[bytes], seq: int) -> None:
    frames, _, _ = seal_batch(fields, seq, bytes(32), b"k" * 32, TS.encode())
    assert frames_size(sum(map(len, fields)), len(fields), seq + 1, len(TS)) == len(frames)


def test_sealed_entries_decode_and_chain() -> None:
    entries = [
        make_entry(
            EventType.LOGIN_FAILURE,
            principal=name,
            outcome=Outcome.DENY,
            channel=Channel.SSH,
            source="127.0.0.1:4000",
            detail={"why": 'quote " backslash \\ tab \t', "n": i},
        )
        for i, name in enumerate(["zoë", "op\nerator", "x" * 256])
    ]
    frames, last, key = seal_batch([e.fields for e in entries], 0, bytes(32), b"k" * 32, TS.encode())
    lines = frames.splitlines(keepends=True)
    assert len(lines) == 3
    prev = GENESIS
    for i, line in enumerate(lines):
        record = decode_frame(line).record
        assert record.seq == i + 1
        assert record.prev == prev
        assert record.time == TS
        prev = record.digest
    assert decode_frame(lines[1]).record.principal == "op\nerator"
    assert last.hex() == prev
    assert key == evolve(evolve(evolve(b"k" * 32)))


@pytest.mark.parametrize("bad", [b"\n", b"\x00", b"\x7f", "é".encode()])
def test_a_byte_outside_printable_ascii_seals_nothing(bad: bytes) -> None:
    with pytest.raises(LogUnavailableError, match="printable ASCII"):
        seal_batch([b'"a":1', b'"b":"' + bad + b'"'], 5, bytes(32), b"k" * 32, TS.encode())
    with pytest.raises(LogUnavailableError, match="printable ASCII"):
        seal_batch([b'"a":1'], 5, bytes(32), b"k" * 32, b"2026" + bad)


def test_a_timestamp_cannot_break_out_of_its_string() -> None:
    with pytest.raises(LogUnavailableError):
        seal_batch([b'"a":1'], 5, bytes(32), b"k" * 32, b'2026","x":"y')


def test_empty_batch_leaves_the_head_unchanged() -> None:
    assert seal_batch([], 9, b"p" * 32, b"k" * 32, TS.encode()) == (b"", b"p" * 32, b"k" * 32)


@given(st.binary(max_size=2000))
def test_crc_is_zlibs(data: bytes) -> None:
    assert lib.mtr_crc32(data, len(data)) == zlib.crc32(data)
