"""The SFTP view of the meter's file area: virtual paths, resources, and race-free access.

The client sees::

    /               virtual, lists the four folders
    /data           the file area's data/      (measurement logs, waveforms)
    /firmware       the file area's firmware/
    /certs          the file area's certs/
    /security-log   virtual and read-only: the security log, rendered by the gated read

Invariants:
    * A client path is normalised lexically; a ``..`` that would climb above
      ``/``, a NUL byte, or text that is not UTF-8 is an escape attempt and
      is refused (:class:`PathRefusedError`), never clamped.
    * Symbolic links are never followed, wherever they are and whoever made
      them: folders are walked one component at a time with ``O_NOFOLLOW``
      relative to the previous directory's descriptor, so a link planted in
      the area (by another channel, or swapped in during a request) yields
      ``ELOOP`` and a refusal instead of a path outside the area.
    * Regular files with more than one hard link are refused: a hard link is
      the other way a file outside the area could appear inside it.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from meterd.errors import ChannelError

AREA_FOLDERS = ("data", "firmware", "certs")
SECURITY_LOG = "security-log"
TOP_LEVEL = (*AREA_FOLDERS, SECURITY_LOG)
MAX_PATH_BYTES = 1024
# The scope tree's segment syntax; a name that does not fit stops the resource path at its parent.
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_MAX_RESOURCE_DEPTH = 15
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathRefusedError(ChannelError):
    """A client path is an escape attempt or otherwise unacceptable.

    Attributes:
        why: Short code for the security log (``outside_area``, ``symlink``, ``bad_path``).
    """

    def __init__(self, why: str, message: str) -> None:
        super().__init__(message)
        self.why = why


@dataclass(frozen=True, slots=True)
class VPath:
    """A normalised client path; build it with :meth:`of`.

    Attributes:
        parts: Components below ``/``; empty for the root.
        text: The path as the client sees it.
        resource: The meter resource the guard decides on: ``/files/...``, cut
            before the first component that is not a valid scope segment.
    """

    parts: tuple[str, ...]
    text: str
    resource: str

    @classmethod
    def of(cls, parts: tuple[str, ...]) -> VPath:
        """Return the path of ``parts`` (computed once: a transfer asks for the resource per block)."""
        kept = ["files"]
        for part in parts[:_MAX_RESOURCE_DEPTH]:
            if not _SEGMENT.match(part):
                break
            kept.append(part)
        return cls(parts, "/" + "/".join(parts), "/" + "/".join(kept))

    @property
    def top(self) -> str:
        """The folder the path lies in, or empty for the root."""
        return self.parts[0] if self.parts else ""

    @property
    def is_virtual(self) -> bool:
        """True for ``/`` and anything under ``/security-log``."""
        return not self.parts or self.top == SECURITY_LOG


def normalise(raw: bytes, cwd: VPath | None = None) -> VPath:
    """Turn a client path into a :class:`VPath`.

    Raises:
        PathRefusedError: NUL, non-UTF-8, too long, climbing above ``/``, or outside the four folders.
    """
    if len(raw) > MAX_PATH_BYTES or b"\0" in raw:
        raise PathRefusedError("bad_path", "unacceptable path")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PathRefusedError("bad_path", "path is not UTF-8") from e
    parts: list[str] = [] if text.startswith("/") or cwd is None else list(cwd.parts)
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise PathRefusedError("outside_area", "path leads outside the meter file area")
            parts.pop()
        else:
            parts.append(part)
    if parts and parts[0] not in TOP_LEVEL:
        raise PathRefusedError("outside_area", "no such folder in the meter file area")
    return VPath.of(tuple(parts))


class Area:
    """Race-free access below the file area's root.

    Args:
        root: The file area (its ``data``, ``firmware`` and ``certs`` folders).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def parent_fd(self, path: VPath) -> tuple[int, str]:
        """Open the directory holding ``path``'s last component; return it and that name.

        The caller closes the descriptor.

        Raises:
            PathRefusedError: A component is a symbolic link.
            OSError: A component is missing or not a directory.
        """
        if not path.parts or path.is_virtual:
            raise OSError(errno.EINVAL, "not a file in the meter file area")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in path.parts[:-1]:
                next_fd = self._step(fd, part)
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd, path.parts[-1]

    @staticmethod
    def _step(fd: int, name: str) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(fd, name):
                raise PathRefusedError("symlink", "symbolic links are not followed") from e
            raise

    def open_dir(self, path: VPath) -> int:
        """Open a folder of the area (no links followed); the caller closes it."""
        fd, name = self.parent_fd(path)
        try:
            return self._step(fd, name)
        finally:
            os.close(fd)

    def lstat(self, path: VPath) -> os.stat_result:
        """Return the attributes of the entry itself (a link is reported as a link)."""
        fd, name = self.parent_fd(path)
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    def open_file(self, path: VPath, flags: int, mode: int = 0o640) -> int:
        """Open a regular file with ``O_NOFOLLOW``; refuse links, devices, FIFOs and hard-linked files."""
        fd, name = self.parent_fd(path)
        try:
            try:
                file_fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=fd)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise PathRefusedError("symlink", "symbolic links are not followed") from e
                raise
        finally:
            os.close(fd)
        info = os.fstat(file_fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(file_fd)
            raise PathRefusedError("not_regular", "only plain files are served")
        os.set_blocking(file_fd, True)
        return file_fd


def _is_link(fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except OSError:
        return False
