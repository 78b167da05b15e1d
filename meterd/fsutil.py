"""Crash-safe file replacement (a reader sees the old file or the new, never half) and private directories.

The only way meterd replaces a file: the meter's state, the policy store, demo
credentials and the exported initial key all go through :func:`atomic_write`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Flush a directory's entries so a rename or unlink in it survives power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    Writes a temporary file in the same directory, fsyncs it, renames it over
    ``path`` and fsyncs the directory.  On failure the old file is intact and
    the temporary file is removed.

    Raises:
        OSError: The write, fsync or rename failed.

    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(mode)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_directory(path.parent)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing, owner-only; return it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
