"""Reading an upload from the meter's file area (``firmware install``, ``cert install``).

The shell reads the same file twice: once in the command's pre-check, before
the guard is asked (so a request that cannot succeed never opens dual
control), and again in the handler after the allow, because the file may
have changed in between.  Both reads go through :func:`read_upload`.
"""

from __future__ import annotations

import errno
import os
import stat

from meterd.errors import MeterError
from meterd.meter.interface import Meter
from meterd.shell.context import UsageError


def upload_name(folder: str, word: str) -> str:
    """Return the plain file name ``word`` gives in ``/folder`` (a ``/folder/`` prefix is allowed).

    Raises:
        UsageError: ``word`` is a path or not a file name.
    """
    name = word.removeprefix(f"/{folder}/")
    if "/" in name or name in ("", ".", ".."):
        raise UsageError(f"give a file name in /{folder}, not a path")
    return name


def read_upload(meter: Meter, folder: str, name: str, limit: int) -> bytes:
    """Read ``/folder/name`` of the file area: a regular file with one link, links never followed.

    The SFTP channel refuses to serve a file with several hard links (it
    could be a second name of something outside the area); the shell holds
    uploads to the same rule.

    Args:
        meter: Whose file area.
        folder: ``firmware`` or ``certs``.
        name: A plain file name (see :func:`upload_name`).
        limit: The most bytes the file may hold.

    Raises:
        MeterError: The file is missing, a link, not a regular file, has
            several links, is larger than ``limit`` or cannot be read.
    """
    shown = f"/{folder}/{name}"
    try:
        # O_NONBLOCK: opening a FIFO someone placed there must not hang the shell.
        fd = os.open(meter.file_area / folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise MeterError(f"{shown} is a symbolic link; upload the file itself") from e
        raise MeterError(f"cannot open {shown}: {e.strerror}") from e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise MeterError(f"{shown} is not a regular file")
        if info.st_nlink != 1:
            raise MeterError(f"{shown} has {info.st_nlink} links; upload a plain copy")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise MeterError(f"cannot read {shown}: {e.strerror}") from e
    finally:
        os.close(fd)
    if len(data) > limit:
        raise MeterError(f"{shown} is larger than {limit} bytes")
    return data
