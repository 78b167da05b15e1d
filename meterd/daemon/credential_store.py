"""The credential store: local users' password hashes, panel PINs and SSH keys, on disk.

One JSON file, ``credentials.json`` in the state directory, owner-only
(0600), replaced atomically and durably (:func:`~meterd.fsutil.atomic_write`)
on every change, so a crash leaves the old store or the new, never a mix.
It holds hashes and public keys only, never a clear-text secret.  Whoever
changes it records the change in the security log.

Its format is :func:`~meterd.policy.credentials.encode_store`'s.
"""

from __future__ import annotations

from pathlib import Path

from meterd.errors import ConfigError
from meterd.fsutil import atomic_write
from meterd.policy.credentials import Credentials, decode_store, encode_store
from meterd.statedir import CREDENTIALS

FILE_NAME = CREDENTIALS.name


class CredentialStore:
    """The credential store file of one state directory.

    Args:
        state_dir: The daemon's state directory.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME

    def exists(self) -> bool:
        """True once the store has been written (a meter that ran this version before)."""
        return self.path.exists()

    def read(self) -> Credentials:
        """The stored credentials (none if the store does not exist yet).

        Raises:
            ConfigError: The store is unreadable or corrupt (the daemon must not
                guess credentials).
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Credentials()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read the credential store: {e}", source=str(self.path)) from e
        try:
            return decode_store(text)
        except ConfigError as e:
            raise ConfigError(f"credential store: {e.message}", source=str(self.path)) from e

    def write(self, credentials: Credentials) -> None:
        """Replace the store with ``credentials`` (atomic, synced, 0600).

        Raises:
            OSError: The write failed; the old store is intact.
        """
        atomic_write(self.path, encode_store(credentials), mode=0o600)
