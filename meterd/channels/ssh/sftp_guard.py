"""The SFTP server's side of the guard: path checks, permission checks, recorded refusals.

:class:`GuardedSFTPServer` holds the session and turns every question into a
guard call; :class:`~meterd.channels.ssh.sftp.MeterSFTPServer` builds the
file operations on it.  See :mod:`meterd.channels.ssh.sftp` for the rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncssh

from meterd.channels.base import Runtime
from meterd.channels.ssh.paths import SECURITY_LOG, Area, PathRefusedError, VPath, normalise
from meterd.guard import Session
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, Outcome
from meterd.seclog import EventType

READ = (Permission.FS_READ_ONLY, Permission.FS_READ_WRITE)
_FOLDER_PERMISSION = {"firmware": Permission.FIRMWARE_MANAGEMENT, "certs": Permission.CERTIFICATE_MANAGEMENT}


def write_permissions(path: VPath) -> tuple[Permission, ...]:
    """What a change at ``path`` needs: ``fs_read_write``, plus the folder's own permission."""
    folder = _FOLDER_PERMISSION.get(path.top)
    return (Permission.FS_READ_WRITE,) if folder is None else (Permission.FS_READ_WRITE, folder)


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
        await self._guard.record(
            EventType.PERMISSION_DENIED,
            session.principal,
            Outcome.DENY,
            channel=Channel.SFTP,
            source=session.source,
            detail={"op": op, "refused": why, "path": shown[:200]},
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
                READ,
                path.resource,
                event=EventType.ACCESS_DECISION,
                detail=detail,
                aggregate=aggregate,
            )
        if not decision.allowed:
            raise denied(f"denied: {decision.request.permission.value} ({decision.detail})")
        return decision

    async def _check_write(self, path: VPath, op: str) -> tuple[Decision, ...]:
        session = self._live()
        if path.is_virtual:
            raise await self._refuse("read_only", path.text, op)
        allowed = []
        for permission in write_permissions(path):
            decision = await self._guard.authorize(
                session,
                permission,
                path.resource,
                event=EventType.ACCESS_DECISION,
                detail={"op": op, "path": path.text[:200]},
            )
            if not decision.allowed:
                raise denied(f"denied: {permission.value} ({decision.detail})")
            allowed.append(decision)
        return tuple(allowed)

    async def _recheck(self, decisions: tuple[Decision, ...]) -> None:
        """Decide the allows an open handle was granted again, for its next block."""
        session = self._live()
        for previous in decisions:
            decision = await self._guard.reauthorize(session, previous)
            if not decision.allowed:
                raise denied(f"denied: {decision.request.permission.value} ({decision.detail})")

    async def _guarded(self, path: VPath, op: str, call: object) -> object:
        """Run a file-system call, turning a refused path into a recorded refusal."""
        try:
            assert callable(call)
            return call()
        except PathRefusedError as e:
            raise await self._refuse(e.why, path.text, op) from e
