"""Host keys: generated (ed25519) on first start, kept 0600 and reused afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

from meterd.errors import ChannelError

HOST_KEY_NAME = "ssh_host_ed25519_key"


def load_or_create_host_key(directory: Path) -> asyncssh.SSHKey:
    """Return the host key kept in ``directory``, creating it (and the directory, 0700) if absent.

    Raises:
        ChannelError: The key cannot be read, written, or is not a private key.
    """
    path = directory / HOST_KEY_NAME
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            key = asyncssh.generate_private_key("ssh-ed25519")
            # O_EXCL: two starting daemons must not both write a key.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key.export_private_key())
                f.flush()
                os.fsync(f.fileno())
            (directory / (HOST_KEY_NAME + ".pub")).write_bytes(key.export_public_key())
            return key
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as e:
        raise ChannelError(f"SSH host key {path}: {e}") from e
