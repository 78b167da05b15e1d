"""Sealing a batch of records in C: chain, MAC, key evolution and checksum in one call.

The frame format is :mod:`meterd.seclog.codec`'s, byte for byte; the
verifier re-derives every frame with the Python codec (``hashlib``/``hmac``),
so each verified log is also a check of this module.  The syncer
(:mod:`meterd.seclog.syncer`) runs the sealer in its own thread;
:func:`seal_batch` exposes it to Python for the property test that holds it to
the codec, and :func:`frames_size` gives the store the exact size of a group
before it is sealed.
"""

from __future__ import annotations

from meterd.seclog.codec import FORMAT_VERSION, KEY_BYTES
from meterd.seclog.errors import LogUnavailableError
from meterd.seclog.native import ffi, lib

_ERRORS = {
    lib.MTR_SEAL_E_ARGUMENT: "bad argument",
    lib.MTR_SEAL_E_BYTE: "a record holds a byte outside printable ASCII",
    lib.MTR_SEAL_E_SPACE: "output buffer too small",
    lib.MTR_SEAL_E_CRYPTO: "SHA-256 is unavailable or failed",
    lib.MTR_SEAL_E_PATCH: "a checkpoint's digest placeholder is missing",
}

if lib.MTR_SEAL_FORMAT_VERSION != FORMAT_VERSION or lib.MTR_SEAL_KEY_BYTES != KEY_BYTES:
    # A sealer built for another frame format must not write a single record.
    raise ImportError("meterd._seal was built for another security-log format")
if lib.mtr_seal_init() != 0:
    raise ImportError("meterd._seal: OpenSSL's SHA-256 is unavailable")

#: The output buffer is written before it is read: clearing it first would only cost time.
_new_unzeroed = ffi.new_allocator(should_clear_after_alloc=False)


def seal_batch(
    fields: list[bytes], seq: int, prev: bytes, key: bytes, ts: bytes
) -> tuple[bytes, bytes, bytes]:
    """Seal records after the head ``(seq, prev, key)``.

    Args:
        fields: Each record's encoded fields (printable ASCII).
        seq: Sequence number of the head; the records get ``seq + 1`` onward.
        prev: Digest (32 bytes) of the head's body.
        key: Sealing key of record ``seq + 1``.
        ts: The batch's timestamp.

    Returns:
        The frames, the digest of the last body, and the key of the record after the last.

    Raises:
        LogUnavailableError: The sealer refused (a byte that may not be logged,
            or SHA-256 failing); nothing was sealed.
    """
    lengths = list(map(len, fields))
    capacity = sum(lengths) + len(fields) * (len(ts) + lib.MTR_SEAL_FRAME_OVERHEAD)
    out = _new_unzeroed("uint8_t[]", capacity)
    head = ffi.new("uint8_t[32]", prev)
    evolving = ffi.new("uint8_t[32]", key)
    try:
        written = lib.mtr_seal(
            b"".join(fields),
            lengths,
            len(fields),
            seq,
            ts,
            len(ts),
            head,
            evolving,
            out,
            capacity,
            0,
        )
        if written < 0:
            raise LogUnavailableError(
                f"cannot seal records: {_ERRORS.get(written, f'error {written}')}", reason="failed"
            )
        return ffi.buffer(out, written)[:], bytes(head), bytes(evolving)
    finally:
        ffi.memmove(evolving, b"\0" * KEY_BYTES, KEY_BYTES)


def frames_size(fields_bytes: int, count: int, first_seq: int, ts_len: int) -> int:
    """Return the exact size of ``count`` frames sealed from ``first_seq`` on.

    Args:
        fields_bytes: The records' encoded fields, in bytes, all together.
        count: How many records.
        first_seq: The first record's seq.
        ts_len: The timestamp's length.
    """
    return int(lib.mtr_seal_frames_size(fields_bytes, count, first_seq, ts_len))
