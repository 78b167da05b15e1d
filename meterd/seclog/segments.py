"""Segment files on disk: names, listing, reading lines, the append-only attribute.

A log directory holds ``seg-NNNNNNNN.log`` segments (numbered from 1, never
reused), the sealing-key file ``key`` and, when a forwarder runs, ``exported``
(the highest sequence number confirmed off the meter).  Segments are opened
``O_APPEND`` and never rewritten; the one exception is cutting a torn last
record when the log reopens after a crash.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path

from meterd.fsutil import fsync_directory
from meterd.record import record

KEY_FILE = "key"
EXPORTED_FILE = "exported"
#: Kept apart from the forwarder's cursor, so neither can move the other back.
ACKNOWLEDGED_FILE = "acknowledged"
_SEGMENT = re.compile(r"seg-(\d{8})\.log")
_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_APPEND_FL = 0x00000020
#: Errors meaning "this file system or this process cannot set the attribute".
_ATTR_UNSUPPORTED = {errno.EPERM, errno.EACCES, errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL}


def segment_name(index: int) -> str:
    """Return the file name of segment ``index``."""
    return f"seg-{index:08d}.log"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """Return ``(index, path)`` of every segment in ``directory``, oldest first."""
    found = []
    for entry in os.scandir(directory):
        match = _SEGMENT.fullmatch(entry.name)
        if match:
            found.append((int(match.group(1)), Path(entry.path)))
    return sorted(found)


@record
class Line:
    """One line of a segment as stored.

    Attributes:
        data: The bytes, including the final ``LF`` unless the line is torn.
        offset: Byte offset of the line in its file.
        path: The file.
    """

    data: bytes
    offset: int
    path: Path

    @property
    def complete(self) -> bool:
        """True when the line ends with ``LF`` (its write completed)."""
        return self.data.endswith(b"\n")


def read_lines(path: Path, start: int = 0, end: int = -1) -> Iterator[Line]:
    """Yield the lines of a file from byte offset ``start`` (the last may be torn).

    With ``end`` >= 0, stop before the line that starts at or after byte ``end``.
    """
    with open(path, "rb", buffering=1 << 20) as f:
        f.seek(start)
        offset = start
        for data in f:
            if 0 <= end <= offset:
                return
            yield Line(data, offset, path)
            offset += len(data)


def split_lines(pieces: list[tuple[Path, int]], parts: int) -> list[list[tuple[Path, int, int]]]:
    """Split files (``(path, size)`` in order) into ``parts`` runs of about equal bytes, at line ends.

    Returns:
        Per part, its ``(path, start, end)`` byte ranges in order; empty parts are left out.
    """
    total = sum(size for _, size in pieces)
    cuts: list[tuple[int, int]] = []  # (piece index, offset just after a LF)
    for n in range(1, parts):
        target, index = total * n // parts, 0
        while index < len(pieces) - 1 and target >= pieces[index][1]:
            target -= pieces[index][1]
            index += 1
        with open(pieces[index][0], "rb") as f:
            f.seek(target)
            f.readline()
            cuts.append((index, f.tell()))
    out: list[list[tuple[Path, int, int]]] = []
    at = (0, 0)
    for cut in [*cuts, (len(pieces) - 1, pieces[-1][1])]:
        run = []
        for index in range(at[0], cut[0] + 1):
            start = at[1] if index == at[0] else 0
            end = cut[1] if index == cut[0] else pieces[index][1]
            if end > start:
                run.append((pieces[index][0], start, end))
        if run:
            out.append(run)
        at = cut
    return out


def last_line(path: Path, window: int = 8192) -> bytes:
    """Return the last complete line of a file, or ``b""``."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        while True:
            start = max(0, size - window)
            f.seek(start)
            tail = f.read(size - start)
            body = tail[: tail.rfind(b"\n") + 1]
            lines = body.splitlines(keepends=True)
            if len(lines) >= 2 or start == 0:
                return lines[-1] if lines else b""
            window *= 4


def set_append_only(fd: int, on: bool) -> bool:
    """Set or clear the Linux append-only attribute (``chattr +a``) where permitted.

    Returns:
        True if the attribute now has the wanted state; False where the file
        system or the process's capabilities (``CAP_LINUX_IMMUTABLE``) do not allow it.
    """
    buf = bytearray(struct.pack("l", 0))
    try:
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buf)
        (flags,) = struct.unpack("l", buf)
        flags = flags | _FS_APPEND_FL if on else flags & ~_FS_APPEND_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("l", flags))
    except OSError as e:
        if e.errno in _ATTR_UNSUPPORTED:
            return False
        raise
    return True


def clear_append_only(path: Path) -> None:
    """Clear the append-only attribute of ``path`` if it can be cleared."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            set_append_only(fd, False)
        finally:
            os.close(fd)


def read_exported(directory: Path, name: str = EXPORTED_FILE) -> int:
    """Return the highest sequence number confirmed off the meter (0 if none).

    Args:
        directory: The log directory.
        name: The cursor: :data:`EXPORTED_FILE` (the forwarder's) or
            :data:`ACKNOWLEDGED_FILE` (an auditor's acknowledgement).
    """
    try:
        text = (directory / name).read_text(encoding="ascii")
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def read_released(directory: Path) -> int:
    """Return the highest seq that ``drop_exported`` may drop: forwarded or acknowledged."""
    return max(read_exported(directory), read_exported(directory, ACKNOWLEDGED_FILE))


def write_exported(directory: Path, seq: int, name: str = EXPORTED_FILE) -> None:
    """Durably record that every record up to ``seq`` is off the meter (see :func:`read_exported`)."""
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, f"{seq}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / name)
    fsync_directory(directory)
