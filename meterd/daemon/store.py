"""The policy store: every policy version the meter has run, and which one is in force.

Layout (below the state directory's ``policy/``): ``v000001.toml``, ...,
and ``current``, a one-line file naming the version in force.  A new version
is written and made durable first; then ``current`` is replaced atomically.
A crash at any instant therefore leaves either the old or the new version in
force, never a mix, and a version file is never rewritten once written.
"""

from __future__ import annotations

import re
from pathlib import Path

from meterd.errors import ConfigError
from meterd.fsutil import atomic_write, private_dir

KEEP_VERSIONS = 50
_NAME = re.compile(r"^v(\d{6})\.toml$")


class PolicyStore:
    """Versions of the running policy, on disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = private_dir(directory)
        self._current = directory / "current"

    def versions(self) -> list[int]:
        """Every stored version number, oldest first."""
        found = (_NAME.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def _path(self, version: int) -> Path:
        return self.directory / f"v{version:06d}.toml"

    def current(self) -> int | None:
        """The version in force, or None before the first commit.

        Raises:
            ConfigError: If the pointer is unreadable or names a missing version.
        """
        try:
            text = self._current.read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ConfigError(f"cannot read: {e.strerror}", source=str(self._current)) from e
        if not text.isdigit() or not self._path(int(text)).is_file():
            raise ConfigError(f'names a missing policy version "{text}"', source=str(self._current))
        return int(text)

    def read(self, version: int) -> str:
        """The text of a stored version.

        Raises:
            ConfigError: If there is no such version.
        """
        try:
            return self._path(version).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"no policy version {version}", source=str(self.directory)) from e

    def commit(self, text: str) -> int:
        """Store ``text`` as a new version and put it in force; return its number."""
        versions = self.versions()
        version = (versions[-1] if versions else 0) + 1
        atomic_write(self._path(version), text.encode("utf-8"))
        atomic_write(self._current, f"{version}\n".encode())
        for old in versions[: max(0, len(versions) + 1 - KEEP_VERSIONS)]:
            self._path(old).unlink(missing_ok=True)
        return version
