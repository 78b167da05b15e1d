"""The SFTP view of the meter's file area: virtual paths and the resources the guard decides on.

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
    * A path that ends in ``/`` (or ``/.``, ``/..``) names a folder, as in
      POSIX: :attr:`VPath.dir_only` keeps that after normalisation, and every
      operation answers ``ENOTDIR`` when the entry is not a folder.

The disk side (links never followed, check then act) is :mod:`meterd.channels.ssh.area`.
"""

from __future__ import annotations

import re

from meterd.errors import ChannelError
from meterd.record import record

AREA_FOLDERS = ("data", "firmware", "certs")
SECURITY_LOG = "security-log"
TOP_LEVEL = (*AREA_FOLDERS, SECURITY_LOG)
MAX_PATH_BYTES = 1024
# The scope tree's segment syntax; a name that does not fit stops the resource path at its parent.
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_MAX_RESOURCE_DEPTH = 15


class PathRefusedError(ChannelError):
    """A client path is an escape attempt or otherwise unacceptable.

    Attributes:
        why: Short code for the security log (``outside_area``, ``symlink``,
            ``not_regular``, ``bad_path``).
    """

    def __init__(self, why: str, message: str) -> None:
        super().__init__(message)
        self.why = why


@record
class VPath:
    """A normalised client path; build it with :meth:`of`.

    Attributes:
        parts: Components below ``/``; empty for the root.
        text: The path as the client sees it.
        resource: The meter resource the guard decides on: ``/files/...``, cut
            before the first component that is not a valid scope segment.
        dir_only: The client wrote a trailing slash: the path must name a folder.
    """

    parts: tuple[str, ...]
    text: str
    resource: str
    dir_only: bool = False

    @classmethod
    def of(cls, parts: tuple[str, ...], dir_only: bool = False) -> VPath:
        """Return the path of ``parts`` (computed once: a transfer asks for the resource per block)."""
        kept = ["files"]
        for part in parts[:_MAX_RESOURCE_DEPTH]:
            if not _SEGMENT.match(part):
                break
            kept.append(part)
        return cls(parts, "/" + "/".join(parts), "/" + "/".join(kept), dir_only and bool(parts))

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
    components = text.split("/")
    for part in components:
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
    return VPath.of(tuple(parts), dir_only=components[-1] in ("", ".", ".."))
