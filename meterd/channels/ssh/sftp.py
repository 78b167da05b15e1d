"""The SFTP channel: the meter's file area, every operation decided by the guard.

Permissions (resources are ``/files/<path>``):
    * a session needs one of ``fs_read_only``, ``fs_read_write``,
      ``certificate_management`` or ``firmware_management``;
    * listing, stat and reading need ``fs_read_only`` or ``fs_read_write``;
      under ``/certs`` and ``/firmware`` the folder's own permission
      (``certificate_management``, ``firmware_management``) reads too;
    * every mutating request (open for write/create/truncate/append, write,
      fsync, remove, rename (source and target), mkdir, rmdir, setstat,
      symlink, link) needs ``fs_read_write`` under ``/data``, and the folder's
      own permission alone under ``/certs`` and ``/firmware``, as OpenSSH's
      ``sftp-server -R`` refuses them in read-only mode;
    * ``/security-log`` needs ``security_logs_access`` and is never writable.
      It is a virtual folder holding ``records.jsonl`` and ``frames.log``:
      opening one performs one gated read of the log (recorded as
      ``audit_log_access``) and serves the newest records as JSON lines, or
      every stored record line byte for byte (a copy ``meterctl log verify``
      checks).  Their listed size is 0 (rendered when opened); clients read
      to end of file.

Opens and changes are recorded one by one.  Metadata reads (stat, listing)
and the reads and writes on an open handle are decided each time (a revoked
permission stops a transfer at its next block) and their allows are
aggregated like measurement polling (recorded as counts by the guard's
sweep); every refusal is recorded.

Check, then act: a request is decided by the guard first, then its target is
checked on disk, and only then does anything change (see
:mod:`meterd.channels.ssh.area`): links are never created, followed or
changed, files with other hard links and special files are neither written
nor removed nor renamed, the area's own folders are never changed, and
ownership is never set.  Such requests and escape attempts are refused and
recorded, and leave the disk as it was.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncssh
from asyncssh.constants import FXF_APPEND, FXF_CREAT, FXF_EXCL, FXF_READ, FXF_TRUNC, FXF_WRITE

from meterd.channels.ssh.area import WriteMode
from meterd.channels.ssh.paths import AREA_FOLDERS, SECURITY_LOG, PathRefusedError, VPath, normalise
from meterd.channels.ssh.sftp_session import GuardedSFTPServer, denied
from meterd.policy.permissions import Permission
from meterd.policy.request import Decision
from meterd.seclog import Query

LOG_FILE = "records.jsonl"
LOG_RECORDS = 10_000
# The stored record lines byte for byte: a copy `meterctl log verify --dir` checks.
FRAMES_FILE = "frames.log"
LOG_VIEW = (LOG_FILE, FRAMES_FILE)
_WRITE_FLAGS = FXF_WRITE | FXF_CREAT | FXF_TRUNC | FXF_APPEND | FXF_EXCL


@dataclass(slots=True)
class _Handle:
    path: VPath
    fd: int | None
    data: bytes = b""
    writable: bool = False
    # The allows the open was granted; every block of the transfer decides them again.
    decisions: tuple[Decision, ...] = ()


def _apply_attrs(fd: int, attrs: asyncssh.SFTPAttrs) -> None:
    """Change a checked descriptor's size, mode and times (ownership was refused before)."""
    if attrs.size is not None:
        os.ftruncate(fd, attrs.size)
    if attrs.permissions is not None:
        os.fchmod(fd, attrs.permissions & 0o777)
    if attrs.atime is not None and attrs.mtime is not None:
        os.utime(fd, (attrs.atime, attrs.mtime))


def _dir_attrs(mode: int = 0o555) -> asyncssh.SFTPAttrs:
    now = int(time.time())
    return asyncssh.SFTPAttrs(
        type=asyncssh.FILEXFER_TYPE_DIRECTORY,
        permissions=stat.S_IFDIR | mode,
        size=0,
        uid=0,
        gid=0,
        atime=now,
        mtime=now,
    )


class MeterSFTPServer(GuardedSFTPServer):
    """The meter file area over SFTP (the operations; the checks are :class:`GuardedSFTPServer`'s)."""

    # -- paths and attributes -----------------------------------------------------

    def realpath(self, path: bytes) -> bytes:
        """Return the normalised path (lexical: links are never resolved, so nothing else can change it)."""
        try:
            return normalise(path).text.encode()
        except PathRefusedError as e:
            raise denied(str(e)) from e

    def _virtual_attrs(self, path: VPath) -> asyncssh.SFTPAttrs:
        if len(path.parts) <= 1:
            return _dir_attrs()
        if len(path.parts) == 2 and path.parts[1] in LOG_VIEW:
            if path.dir_only:
                raise NotADirectoryError(errno.ENOTDIR, "not a directory")
            now = int(time.time())
            return asyncssh.SFTPAttrs(
                type=asyncssh.FILEXFER_TYPE_REGULAR,
                permissions=stat.S_IFREG | 0o444,
                size=0,
                uid=0,
                gid=0,
                atime=now,
                mtime=now,
            )
        raise asyncssh.SFTPNoSuchFile("no such file")

    async def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
        """Attributes of an entry; a link is refused (listing its folder still shows it as a link)."""
        vpath = await self._path(path, "stat")
        await self._check_read(vpath, "stat", aggregate=True)
        if vpath.is_virtual:
            return self._virtual_attrs(vpath)
        result = await self._guarded(vpath, "stat", lambda: self._area.lstat(vpath))
        if stat.S_ISLNK(result.st_mode):
            raise await self._refuse("symlink", vpath.text, "stat")
        return asyncssh.SFTPAttrs.from_local(result)

    async def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        """Same as :meth:`lstat`: links are never followed."""
        return await self.lstat(path)

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        """List a folder."""
        vpath = await self._path(path, "list")
        await self._check_read(vpath, "list", aggregate=True)
        if not vpath.parts:
            for name in (*AREA_FOLDERS, SECURITY_LOG):
                yield asyncssh.SFTPName(name.encode(), attrs=_dir_attrs())
            return
        if vpath.is_virtual:
            if len(vpath.parts) != 1:
                raise asyncssh.SFTPNoSuchFile("no such folder")
            for name in LOG_VIEW:
                yield asyncssh.SFTPName(
                    name.encode(), attrs=self._virtual_attrs(VPath.of((SECURITY_LOG, name)))
                )
            return
        fd = await self._guarded(vpath, "list", lambda: self._area.open_dir(vpath))
        try:
            names = sorted(os.listdir(fd))
            entries = []
            for name in names:
                try:
                    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError:
                    continue
                entries.append(asyncssh.SFTPName(name.encode(), attrs=asyncssh.SFTPAttrs.from_local(info)))
        finally:
            os.close(fd)
        for entry in entries:
            yield entry

    # -- files ----------------------------------------------------------------------

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        """Open a file; any write, create, truncate or append flag needs the write permission."""
        vpath = await self._path(path, "open")
        if pflags & _WRITE_FLAGS:
            decision = await self._check_write(vpath, "open_write")
            mode = WriteMode(
                read=bool(pflags & FXF_READ),
                create=bool(pflags & FXF_CREAT),
                exclusive=bool(pflags & FXF_EXCL),
                truncate=bool(pflags & FXF_TRUNC),
                append=bool(pflags & FXF_APPEND),
            )
            fd = await self._guarded(vpath, "open", lambda: self._area.open_write(vpath, mode))
            return _Handle(vpath, fd, writable=True, decisions=(decision,))
        decision = await self._check_read(vpath, "open_read")
        if vpath.is_virtual:
            return await self._open_log(vpath)
        fd = await self._guarded(vpath, "open", lambda: self._area.open_read(vpath))
        return _Handle(vpath, fd, decisions=(decision,))

    async def _open_log(self, vpath: VPath) -> _Handle:
        if len(vpath.parts) != 2 or vpath.parts[1] not in LOG_VIEW:
            raise asyncssh.SFTPNoSuchFile("no such file")
        if vpath.dir_only:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        session = self._live()
        decision = await self._guard.authorize(
            session,
            Permission.SECURITY_LOGS_ACCESS,
            vpath.resource,
            detail={"op": "open_read", "path": vpath.text},
        )
        if not decision.allowed:
            raise denied(f"denied: security_logs_access ({decision.detail})")
        if vpath.parts[1] == FRAMES_FILE:
            data = await self._guard.read_log_frames(decision)
        else:
            records = await self._guard.read_log(decision, Query(limit=LOG_RECORDS))
            data = "".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in records).encode()
        return _Handle(vpath, None, data, decisions=(decision,))

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        """Read from an open file (the open's allow is decided again, allows aggregated)."""
        assert isinstance(file_obj, _Handle)
        await self._recheck(file_obj.decisions)
        if file_obj.fd is None:
            return file_obj.data[offset : offset + size]
        return os.pread(file_obj.fd, size, offset)

    async def _writable(self, file_obj: object, op: str) -> int:
        """The descriptor of a handle opened for writing, after the open's allow is decided again."""
        assert isinstance(file_obj, _Handle)
        if not file_obj.writable or file_obj.fd is None:
            raise await self._refuse("not_open_for_writing", file_obj.path.text, op)
        await self._recheck(file_obj.decisions)
        return file_obj.fd

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        """Write to a file opened for writing (the open's allow decided again, allows aggregated)."""
        fd = await self._writable(file_obj, "write")
        return os.pwrite(fd, data, offset)

    def close(self, file_obj: object) -> None:
        """Close a handle."""
        assert isinstance(file_obj, _Handle)
        if file_obj.fd is not None:
            os.close(file_obj.fd)
            file_obj.fd = None

    async def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        """Attributes of an open file."""
        assert isinstance(file_obj, _Handle)
        await self._recheck(file_obj.decisions)
        if file_obj.fd is None:
            attrs = self._virtual_attrs(file_obj.path)
            attrs.size = len(file_obj.data)
            return attrs
        return asyncssh.SFTPAttrs.from_local(os.fstat(file_obj.fd))

    async def fsync(self, file_obj: object) -> None:
        """Flush a file opened for writing."""
        fd = await self._writable(file_obj, "fsync")
        os.fsync(fd)

    # -- changes ----------------------------------------------------------------------

    async def _check_attrs(self, vpath: VPath, attrs: asyncssh.SFTPAttrs) -> None:
        """Refuse what is never changed, before anything is."""
        if attrs.uid is not None or attrs.gid is not None or attrs.owner or attrs.group:
            raise await self._refuse("ownership", vpath.text, "setstat")

    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        """Change size, mode or times of a plain file or a folder (ownership is never changed)."""
        vpath = await self._path(path, "setstat")
        await self._check_write(vpath, "setstat")
        if len(vpath.parts) < 2:
            raise await self._refuse("area_folder", vpath.text, "setstat")
        await self._check_attrs(vpath, attrs)
        size = attrs.size is not None
        fd = await self._guarded(vpath, "setstat", lambda: self._area.open_for_attrs(vpath, truncate=size))
        try:
            _apply_attrs(fd, attrs)
        finally:
            os.close(fd)

    async def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        """Same as :meth:`setstat`: links are never followed anyway."""
        await self.setstat(path, attrs)

    async def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        """Change an open file's attributes (its size only if it was opened for writing)."""
        assert isinstance(file_obj, _Handle)
        vpath = file_obj.path
        await self._check_write(vpath, "setstat")
        await self._check_attrs(vpath, attrs)
        if attrs.size is not None:
            fd = await self._writable(file_obj, "setstat")
        elif file_obj.fd is None:
            raise await self._refuse("read_only", vpath.text, "setstat")
        else:
            fd = file_obj.fd
        await self._guarded(vpath, "setstat", lambda: self._area.check_open(fd))
        _apply_attrs(fd, attrs)

    async def _below_folder(self, vpath: VPath, op: str) -> None:
        """Refuse a change to one of the area's own folders."""
        if len(vpath.parts) < 2:
            raise await self._refuse("area_folder", vpath.text, op)

    async def remove(self, path: bytes) -> None:
        """Remove a plain file (never a link, nor a file with other hard links)."""
        vpath = await self._path(path, "remove")
        await self._check_write(vpath, "remove")
        await self._below_folder(vpath, "remove")
        await self._guarded(vpath, "remove", lambda: self._area.remove(vpath))

    async def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        """Create a folder."""
        vpath = await self._path(path, "mkdir")
        await self._check_write(vpath, "mkdir")
        await self._below_folder(vpath, "mkdir")
        await self._guarded(vpath, "mkdir", lambda: self._area.mkdir(vpath))

    async def rmdir(self, path: bytes) -> None:
        """Remove an empty folder."""
        vpath = await self._path(path, "rmdir")
        await self._check_write(vpath, "rmdir")
        await self._below_folder(vpath, "rmdir")
        await self._guarded(vpath, "rmdir", lambda: self._area.rmdir(vpath))

    async def _rename(self, oldpath: bytes, newpath: bytes, replace: bool) -> None:
        old = await self._path(oldpath, "rename")
        new = await self._path(newpath, "rename")
        await self._check_write(old, "rename")
        await self._check_write(new, "rename")
        await self._below_folder(old, "rename")
        await self._below_folder(new, "rename")
        await self._guarded(old, "rename", lambda: self._area.rename(old, new, replace=replace))

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        """Rename; the target must not exist."""
        await self._rename(oldpath, newpath, replace=False)

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        """Rename, replacing a target of the same kind (a plain file, an empty folder)."""
        await self._rename(oldpath, newpath, replace=True)

    async def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        """Checked like any change, then refused: the file area holds no links."""
        vpath = await self._path(newpath, "symlink")
        await self._check_write(vpath, "symlink")
        raise await self._refuse("links_not_supported", vpath.text, "symlink")

    async def link(self, oldpath: bytes, newpath: bytes) -> None:
        """Checked like any change, then refused: the file area holds no links."""
        vpath = await self._path(newpath, "link")
        await self._check_write(vpath, "link")
        raise await self._refuse("links_not_supported", vpath.text, "link")

    async def readlink(self, path: bytes) -> bytes:
        """Refused: links are not served (their targets may name places outside the area)."""
        vpath = await self._path(path, "readlink")
        await self._check_read(vpath, "readlink")
        raise await self._refuse("symlink", vpath.text, "readlink")

    def statvfs(self, path: bytes) -> asyncssh.SFTPVFSAttrs:
        """Not offered (it would describe the controller's file systems)."""
        raise asyncssh.SFTPOpUnsupported("statvfs is not supported")

    def fstatvfs(self, file_obj: object) -> asyncssh.SFTPVFSAttrs:
        """Not offered."""
        raise asyncssh.SFTPOpUnsupported("statvfs is not supported")

    def open56(self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs) -> object:
        """Not offered: the listener negotiates SFTP version 3."""
        raise asyncssh.SFTPOpUnsupported("SFTP v5+ open is not supported")

    async def exit(self) -> None:
        """End the guard session when the SFTP session ends (asyncssh has closed the handles).

        The channel is hung up first, as the shell does: the client has nothing left to
        wait for, and the durable logout record may take a file-system journal commit
        (after an upload, the uploaded data's write-back) that it need not sit through.
        """
        if self._on_exit is not None:
            on_exit, self._on_exit = self._on_exit, None
            self.channel.close()
            await on_exit()
