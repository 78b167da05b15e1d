"""Starting directory login: the backend ``[directory]`` names, its secret, its offline cache.

Start-up errors (an LDAP password file others may read, a CA that does not
load) are :class:`~meterd.errors.ConfigError` naming
the key, so meterd refuses to start rather than run without the directory
the configuration asks for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from meterd.errors import ConfigError
from meterd.statedir import DIRECTORY_CACHE

if TYPE_CHECKING:
    from meterd.directory.backend import DirectoryBackend
    from meterd.directory.settings import DirectorySettings
    from meterd.guard.directory_gate import DirectoryGate

#: The offline cache's file, below the state directory.
OFFLINE_CACHE = DIRECTORY_CACHE.name


def _backend(settings: DirectorySettings) -> DirectoryBackend:
    # The clients (ldap3 and what it loads) load only on a meter that has a
    # directory configured.
    if settings.backend == "ldap" and settings.ldap is not None:
        from meterd.directory.ldap import LdapBackend, read_password_file  # noqa: PLC0415

        return LdapBackend(settings.ldap, read_password_file(settings.ldap.bind_password_file))
    if settings.backend == "radius" and settings.radius is not None:
        from meterd.directory.radius import RadiusBackend  # noqa: PLC0415

        # The shared secret was read (and its file's mode checked) with the configuration.
        return RadiusBackend(settings.radius)
    raise ConfigError(f"backend {settings.backend!r} has no settings", key_path="directory.backend")


def build_gate(settings: DirectorySettings, state_dir: Path) -> DirectoryGate:
    """Return the guard's directory gate for ``settings``.

    Raises:
        ConfigError: The backend cannot be started (see the module docstring).
    """
    from meterd.directory.offline import OfflineCache  # noqa: PLC0415
    from meterd.guard.directory_gate import DirectoryGate  # noqa: PLC0415

    offline = (
        OfflineCache(state_dir / OFFLINE_CACHE, settings.offline_ttl) if settings.offline_ttl > 0 else None
    )
    return DirectoryGate(settings, _backend(settings), offline=offline)
