"""The file area on disk: every operation looks at its target, decides, and only then acts.

An operation walks to the folder holding its target one component at a time,
with ``O_NOFOLLOW`` relative to the previous folder's descriptor, looks at the
target entry itself (``fstatat`` without following), and acts only if the
entry passes; where the act has a descriptor (open, truncate, chmod, times)
it is the descriptor that was checked.

Invariants:
    * Symbolic links are never followed, created or changed, wherever they are
      and whoever made them: a link in a parent folder or at the target is
      refused (``symlink``), so a link planted in the area (by another channel,
      or swapped in during a request) never leads outside it.
    * A file is read or changed only if it is a regular file with exactly one
      link; anything else (a hard-linked file, a FIFO, a socket, a device) is
      refused (``not_regular``).  A hard link is the other way a file outside
      the area could appear inside it: writing, truncating, chmod-ing,
      removing or renaming it would change that file or its metadata.
    * Nothing is truncated by ``O_TRUNC``: an existing file is opened without
      it, its descriptor checked, and only then cut with ``ftruncate``.  A new
      file is made with ``O_CREAT | O_EXCL``, which never opens an entry that
      appeared since the look.
    * A rename that must not replace its target uses
      ``renameat2(RENAME_NOREPLACE)``; one that may replace it checks the
      target like a removal does.
    * A path written with a trailing slash must name a folder (``ENOTDIR``).

Remove and rename act on names, not descriptors: between the look and the act
a process on the controller that can write into the area's folders could swap
the entry.  meterd's own sessions cannot: each operation runs to completion on
the event loop.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from meterd.channels.ssh.paths import PathRefusedError, VPath
from meterd.record import record

NEW_FILE_MODE = 0o640
NEW_FOLDER_MODE = 0o750
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in after the look must not hang the event loop (it is refused after).
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_RENAME_NOREPLACE = 1


@record
class WriteMode:
    """How a file is opened for a change (the client's open flags).

    Attributes:
        read: Also open for reading.
        create: Create the file if it does not exist.
        exclusive: With ``create``: fail if it exists.
        truncate: Cut an existing file to 0 bytes (after the checks).
        append: Every write goes to the end.
    """

    read: bool = False
    create: bool = False
    exclusive: bool = False
    truncate: bool = False
    append: bool = False


class Area:
    """Race-free, check-then-act access below the file area's root.

    Every method raises :class:`PathRefusedError` for a link or a file that
    may not be touched (nothing has changed then), and :class:`OSError` for
    what POSIX would answer (missing entry, not a folder, folder not empty).

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
                next_fd = _step(fd, part)
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd, path.parts[-1]

    @contextmanager
    def _parent(self, path: VPath) -> Iterator[tuple[int, str]]:
        fd, name = self.parent_fd(path)
        try:
            yield fd, name
        finally:
            os.close(fd)

    # -- reading ----------------------------------------------------------------------

    def lstat(self, path: VPath) -> os.stat_result:
        """Return the attributes of the entry itself (a link is reported as a link)."""
        with self._parent(path) as (fd, name):
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if path.dir_only and not stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        return info

    def open_dir(self, path: VPath) -> int:
        """Open a folder of the area (no links followed); the caller closes it."""
        with self._parent(path) as (fd, name):
            return _step(fd, name)

    def open_read(self, path: VPath) -> int:
        """Open a plain file for reading; the caller closes it."""
        with self._parent(path) as (fd, name):
            _plain_file(_existing(fd, name, path))
            return _checked(_open(fd, name, os.O_RDONLY))

    # -- changing ---------------------------------------------------------------------

    def open_write(self, path: VPath, mode: WriteMode) -> int:
        """Open a plain file for a change, or create it; truncate only the checked descriptor."""
        access = (os.O_RDWR if mode.read else os.O_WRONLY) | (os.O_APPEND if mode.append else 0)
        with self._parent(path) as (fd, name):
            info = _entry(fd, name, path)
            if info is None:
                if not mode.create:
                    raise FileNotFoundError(errno.ENOENT, "no such file")
                if path.dir_only:
                    raise IsADirectoryError(errno.EISDIR, "a file name cannot end in /")
                return _checked(_open(fd, name, access | os.O_CREAT | os.O_EXCL))
            if mode.create and mode.exclusive:
                raise FileExistsError(errno.EEXIST, "file exists")
            _plain_file(info)
            file_fd = _checked(_open(fd, name, access))
        if mode.truncate:
            _on_fd(file_fd, lambda: os.ftruncate(file_fd, 0))
        return file_fd

    def open_for_attrs(self, path: VPath, *, truncate: bool) -> int:
        """Open a plain file or a folder to change its attributes on the descriptor.

        Args:
            path: The file or folder.
            truncate: The size will change: a file is opened for writing, a folder refused.
        """
        with self._parent(path) as (fd, name):
            info = _existing(fd, name, path)
            if stat.S_ISDIR(info.st_mode):
                if truncate:
                    raise IsADirectoryError(errno.EISDIR, "a folder has no size to set")
                return _step(fd, name)
            _plain_file(info)
            return _checked(_open(fd, name, os.O_WRONLY if truncate else os.O_RDONLY))

    def remove(self, path: VPath) -> None:
        """Remove a plain file."""
        with self._parent(path) as (fd, name):
            _plain_file(_existing(fd, name, path))
            os.unlink(name, dir_fd=fd)

    def mkdir(self, path: VPath) -> None:
        """Create a folder."""
        with self._parent(path) as (fd, name):
            if _entry(fd, name, path) is not None:
                raise FileExistsError(errno.EEXIST, "file exists")
            os.mkdir(name, NEW_FOLDER_MODE, dir_fd=fd)

    def rmdir(self, path: VPath) -> None:
        """Remove an empty folder."""
        with self._parent(path) as (fd, name):
            if not stat.S_ISDIR(_existing(fd, name, path).st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory")
            os.rmdir(name, dir_fd=fd)

    def rename(self, old: VPath, new: VPath, *, replace: bool) -> None:
        """Rename a plain file or a folder; replace the target only if ``replace`` and it is one too."""
        with self._parent(old) as (old_fd, old_name), self._parent(new) as (new_fd, new_name):
            source = _existing(old_fd, old_name, old)
            folder = stat.S_ISDIR(source.st_mode)
            if not folder:
                _plain_file(source)
                if new.dir_only:
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory")
            target = _entry(new_fd, new_name, new)
            if target is None or not replace:
                _rename_noreplace(old_fd, old_name, new_fd, new_name)
                return
            if folder and not stat.S_ISDIR(target.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory")
            if not folder:
                _plain_file(target)
            os.rename(old_name, new_name, src_dir_fd=old_fd, dst_dir_fd=new_fd)

    @staticmethod
    def check_open(fd: int) -> None:
        """Check an open file again before a change to it (it may have gained a link since).

        Raises:
            PathRefusedError: It is no longer a plain file.
        """
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise PathRefusedError("not_regular", "only plain files are served or changed")


def _step(fd: int, name: str) -> int:
    """Open the folder ``name`` in ``fd`` without following a link."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(fd, name):
            raise PathRefusedError("symlink", "symbolic links are not followed") from e
        raise


def _is_link(fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _entry(fd: int, name: str, path: VPath) -> os.stat_result | None:
    """The target entry itself, or None if there is none; a link is refused."""
    try:
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        raise PathRefusedError("symlink", "symbolic links are not followed or changed")
    if path.dir_only and not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory")
    return info


def _existing(fd: int, name: str, path: VPath) -> os.stat_result:
    info = _entry(fd, name, path)
    if info is None:
        raise FileNotFoundError(errno.ENOENT, "no such file")
    return info


def _plain_file(info: os.stat_result) -> None:
    """Pass a regular file with one link; a folder is ``EISDIR``, anything else refused."""
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory")
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        raise PathRefusedError("not_regular", "only plain files are served or changed")


def _open(fd: int, name: str, flags: int) -> int:
    try:
        return os.open(name, flags | _FILE_FLAGS, NEW_FILE_MODE, dir_fd=fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise PathRefusedError("symlink", "symbolic links are not followed") from e
        raise


def _checked(file_fd: int) -> int:
    """Check what was opened (the entry may have been swapped since the look); return it, blocking."""
    _on_fd(file_fd, lambda: Area.check_open(file_fd))
    os.set_blocking(file_fd, True)
    return file_fd


def _on_fd(fd: int, action: Callable[[], None]) -> None:
    """Run ``action`` on a descriptor that is closed if it fails."""
    try:
        action()
    except BaseException:
        os.close(fd)
        raise


def _load_renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # a C library without renameat2 (glibc before 2.28)
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    func.restype = ctypes.c_int
    return func


_renameat2 = _load_renameat2()


def _rename_noreplace(old_fd: int, old_name: str, new_fd: int, new_name: str) -> None:
    """Rename, failing with ``EEXIST`` if the target exists (checked by the kernel, atomically).

    Fails closed: without ``renameat2`` (or on a file system without
    ``RENAME_NOREPLACE``) the rename is not done.
    """
    if _renameat2 is None:
        raise OSError(errno.ENOSYS, "rename without replacing is not available")
    if _renameat2(old_fd, os.fsencode(old_name), new_fd, os.fsencode(new_name), _RENAME_NOREPLACE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
