"""One SFTP session as the guard sees it: path checks, permission checks, recorded refusals.

:class:`GuardedSFTPServer` holds the session and turns every question into a
guard call; :class:`~meterd.channels.ssh.sftp.MeterSFTPServer` builds the
file operations on it.  See :mod:`meterd.channels.ssh.sftp` for the rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncssh

from meterd.channels.ssh.area import Area
from meterd.channels.ssh.paths import SECURITY_LOG, PathRefusedError, VPath, normalise
from meterd.guard import Session
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision
from meterd.runtime import Runtime
from meterd.seclog import EventType

T = TypeVar("T")

READ = (Permission.FS_READ_ONLY, Permission.FS_READ_WRITE)
_FOLDER_PERMISSION = {"firmware": Permission.FIRMWARE_MANAGEMENT, "certs": Permission.CERTIFICATE_MANAGEMENT}
#: Any one of these opens an SFTP session (each request is then decided on its own).
SESSION = (*READ, *_FOLDER_PERMISSION.values())


def read_permissions(path: VPath) -> tuple[Permission, ...]:
    """What reading at ``path`` needs, any one of: ``fs_read_only``, ``fs_read_write``, the folder's own.

    The root only lists the folders' names: any permission that opens a session reads it.
    """
    if not path.parts:
        return SESSION
    folder = _FOLDER_PERMISSION.get(path.top)
    return READ if folder is None else (*READ, folder)


def write_permission(path: VPath) -> Permission:
    """What a change at ``path`` needs: the folder's own permission, else ``fs_read_write``."""
    return _FOLDER_PERMISSION.get(path.top, Permission.FS_READ_WRITE)


def denied(message: str = "permission denied") -> asyncssh.SFTPError:
    """The SFTP status a refusal is answered with."""
    return asyncssh.SFTPPermissionDenied(message)


class GuardedSFTPServer(asyncssh.SFTPServer):
    """One SFTP session (a guard session on the ``sftp`` channel) and its guard questions.

    Args:
        chan: The SSH channel.
        area: The file area.
        session: The guard session, or None when the login was refused
            (every request is then refused).
        runtime: The daemon's shared parts.
        on_exit: Awaited once when the session ends.
    """

    def __init__(
        self,
        chan: asyncssh.SSHServerChannel[bytes],
        area: Area,
        session: Session | None,
        runtime: Runtime,
        on_exit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        # The chroot is defence in depth: every method that touches files is overridden.
        super().__init__(chan, chroot=bytes(area.root))
        self._runtime = runtime
        self._guard = runtime.guard
        self._area = area
        self._session = session
        self._on_exit = on_exit

    # -- deciding -------------------------------------------------------------

    def _live(self) -> Session:
        if self._session is None:
            raise denied("not logged in")
        return self._session

    async def _refuse(self, why: str, raw: bytes | str, op: str) -> asyncssh.SFTPError:
        session = self._live()
        shown = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        await self._guard.refuse(
            session.principal, Channel.SFTP, session.source, {"op": op, "refused": why, "path": shown[:200]}
        )
        return denied(f"refused: {why}")

    async def _path(self, raw: bytes, op: str) -> VPath:
        try:
            return normalise(raw)
        except PathRefusedError as e:
            raise await self._refuse(e.why, raw, op) from e

    async def _check_read(self, path: VPath, op: str, aggregate: bool = False) -> Decision:
        session = self._live()
        detail = {"op": op, "path": path.text[:200]}
        if path.top == SECURITY_LOG:
            decision = await self._guard.authorize(
                session, Permission.SECURITY_LOGS_ACCESS, path.resource, detail=detail, aggregate=aggregate
            )
        else:
            decision = await self._guard.authorize_any(
                session,
                read_permissions(path),
                path.resource,
                event=EventType.ACCESS_DECISION,
                detail=detail,
                aggregate=aggregate,
            )
        if not decision.allowed:
            raise denied(f"denied: {decision.request.permission.value} ({decision.detail})")
        return decision

    async def _check_write(self, path: VPath, op: str) -> Decision:
        session = self._live()
        if path.is_virtual:
            raise await self._refuse("read_only", path.text, op)
        permission = write_permission(path)
        decision = await self._guard.authorize(
            session,
            permission,
            path.resource,
            event=EventType.ACCESS_DECISION,
            detail={"op": op, "path": path.text[:200]},
        )
        if not decision.allowed:
            raise denied(f"denied: {permission.value} ({decision.detail})")
        return decision

    async def _recheck(self, decisions: tuple[Decision, ...]) -> None:
        """Decide the allows an open handle was granted again, for its next block."""
        session = self._live()
        for previous in decisions:
            decision = await self._guard.reauthorize(session, previous)
            if not decision.allowed:
                raise denied(f"denied: {decision.request.permission.value} ({decision.detail})")

    async def _guarded(self, path: VPath, op: str, call: Callable[[], T]) -> T:
        """Run a file-system call (it checks, then acts), turning a refused path into a recorded refusal."""
        try:
            return call()
        except PathRefusedError as e:
            raise await self._refuse(e.why, path.text, op) from e
