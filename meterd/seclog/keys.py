"""The sealing-key file: the only copy of the current forward-secure key.

Why two fixed slots overwritten in place rather than write-and-rename: a rename
leaves the previous key in a freed block nobody scrubs, while overwriting a
fixed slot replaces the bytes where they are, and the other slot is zeroed
once the new one is durable (made so by the next segment sync's device cache
flush, or by the key file's own ``fdatasync`` when the log is idle: see
``keep_keys`` in ``native/meterd_sync.c``).
A crash mid-write leaves at least one slot whose checksum is good, so the file
is always loadable (atomic in effect).  The slot with the highest ``seq_next``
wins.  The open file is ``flock``-ed: one writer per log, or the chain would fork.

Slot layout (64 bytes): ``b"MSK1"``, ``seq_next`` (u64 big-endian: the seq of
the next record this key will seal), the 32-byte key, CRC-32 of the preceding
44 bytes, zero padding.
"""

from __future__ import annotations

import fcntl
import os
import struct
import zlib
from pathlib import Path

from meterd.seclog.codec import KEY_BYTES
from meterd.seclog.errors import LogKeyError, LogUnavailableError

_MAGIC = b"MSK1"
_SLOT = 64
_HEAD = struct.Struct(">4sQ32s")
_ZERO = bytes(_SLOT)


def _pack(seq_next: int, key: bytes) -> bytes:
    head = _HEAD.pack(_MAGIC, seq_next, key)
    return (head + struct.pack(">I", zlib.crc32(head))).ljust(_SLOT, b"\0")


def _unpack(slot: bytes) -> tuple[int, bytes] | None:
    if len(slot) < _HEAD.size + 4:
        return None
    head = slot[: _HEAD.size]
    (crc,) = struct.unpack(">I", slot[_HEAD.size : _HEAD.size + 4])
    magic, seq_next, key = _HEAD.unpack(head)
    if magic != _MAGIC or zlib.crc32(head) != crc:
        return None
    return seq_next, key


class KeyFile:
    """The open key file of a live log, locked against a second writer.

    Python creates and loads it; while the log is open, the syncer
    (:mod:`meterd.seclog.syncer`, packing slots the same way) writes each new
    key after the records it follows are durable.

    Args:
        path: The key file (created 0600 by :meth:`create`).

    Raises:
        LogKeyError: The file cannot be opened.
        LogUnavailableError: Another writer holds the log (``reason="busy"``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise LogKeyError(f"{path}: cannot open the sealing key: {e.strerror}") from e
        try:
            # One writer per log: a second one would fork the chain.
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise LogUnavailableError(f"{path}: the log is open in another writer", reason="busy") from None
        self._slot = 0

    @staticmethod
    def create(path: Path, seq_next: int, key: bytes) -> None:
        """Write a new key file (never overwriting one) and make it durable."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, _pack(seq_next, key) + _ZERO)
            os.fsync(fd)
        finally:
            os.close(fd)

    def load(self) -> tuple[int, bytes]:
        """Return ``(seq_next, key)`` from the newest valid slot.

        Raises:
            LogKeyError: Neither slot is valid.
        """
        data = os.pread(self._fd, 2 * _SLOT, 0)
        slots = [_unpack(data[i * _SLOT : (i + 1) * _SLOT]) for i in (0, 1)]
        valid = [(s, i) for i, s in enumerate(slots) if s is not None]
        if not valid:
            raise LogKeyError(f"{self.path}: no valid sealing key")
        (seq_next, key), index = max(valid, key=lambda v: v[0][0])
        if len(key) != KEY_BYTES:
            raise LogKeyError(f"{self.path}: malformed sealing key")
        self._slot = index
        return seq_next, key

    @property
    def fd(self) -> int:
        """The open, locked descriptor: the syncer writes each new key through it."""
        return self._fd

    @property
    def slot(self) -> int:
        """The slot :meth:`load` found valid (the syncer writes the other one next)."""
        return self._slot

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)


def parse_key(text: str) -> bytes:
    """Parse an auditor's key (64 hex digits).

    Raises:
        LogKeyError: Not 32 bytes of hex.
    """
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise LogKeyError("a sealing key is 64 hexadecimal digits") from None
    if len(key) != KEY_BYTES:
        raise LogKeyError("a sealing key is 64 hexadecimal digits")
    return key
