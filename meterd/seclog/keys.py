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

The slot layout (64 bytes) has one definition, in C (``mtr_key_pack`` and
``mtr_key_unpack`` in ``native/meterd_sync.h``), which the syncer's thread
writes with and this module reads and creates files with.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from meterd.seclog.codec import KEY_BYTES
from meterd.seclog.errors import LogKeyError, LogUnavailableError
from meterd.seclog.native import ffi, lib

_SLOT: int = lib.MTR_SYNC_KEY_SLOT
_ZERO = bytes(_SLOT)


def pack_slot(seq_next: int, key: bytes) -> bytes:
    """Return a key-file slot holding ``key``, the key of record ``seq_next``."""
    slot = ffi.new("uint8_t[]", _SLOT)
    lib.mtr_key_pack(slot, seq_next, key)
    return bytes(ffi.buffer(slot, _SLOT))


def unpack_slot(slot: bytes) -> tuple[int, bytes] | None:
    """Return ``(seq_next, key)`` of a valid slot, or None."""
    if len(slot) < _SLOT:
        return None
    seq_next = ffi.new("uint64_t *")
    key = ffi.new("uint8_t[]", KEY_BYTES)
    if lib.mtr_key_unpack(slot, seq_next, key) != 0:
        return None
    return int(seq_next[0]), bytes(ffi.buffer(key, KEY_BYTES))


class KeyFile:
    """The open key file of a live log, locked against a second writer.

    Python creates and loads it; while the log is open, the syncer
    (:mod:`meterd.seclog.syncer`) writes each new key after the records it
    follows are durable.

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
            os.write(fd, pack_slot(seq_next, key) + _ZERO)
            os.fsync(fd)
        finally:
            os.close(fd)

    def load(self) -> tuple[int, bytes]:
        """Return ``(seq_next, key)`` from the newest valid slot.

        Raises:
            LogKeyError: Neither slot is valid.
        """
        data = os.pread(self._fd, 2 * _SLOT, 0)
        slots = [unpack_slot(data[i * _SLOT : (i + 1) * _SLOT]) for i in (0, 1)]
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
