"""The ``[ssh]`` section of ``meterd.toml``: validated, frozen settings of the SSH listener."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meterd.tomlreader import Reader

KEYS = ("enabled", "listen", "port", "host_key_dir", "login_grace_time", "max_auth_tries", "max_sessions")


@dataclass(frozen=True, slots=True)
class SshConfig:
    """Settings of the SSH/SFTP listener.

    Attributes:
        enabled: Whether the daemon starts the listener.
        listen: Address to bind (loopback by default).
        port: TCP port (0 picks a free one, for tests).
        host_key_dir: Where host keys are generated on first start and kept; a
            relative path is taken below the state directory (see :meth:`host_key_path`).
        login_grace_time: Seconds a client has to authenticate.
        max_auth_tries: Authentication attempts per connection.
        max_sessions: Open shell and SFTP sessions across all connections.
    """

    enabled: bool = True
    listen: str = "127.0.0.1"
    port: int = 2222
    host_key_dir: Path = Path("ssh")
    login_grace_time: int = 30
    max_auth_tries: int = 6
    max_sessions: int = 32

    def host_key_path(self, state_dir: Path) -> Path:
        """Return the host key directory for the daemon's ``state_dir``."""
        return state_dir / self.host_key_dir


def load(reader: Reader, config_dir: Path) -> SshConfig:
    """Read the ``[ssh]`` table; problems go to the reader's error list.

    Args:
        reader: The ``ssh`` table.
        config_dir: Directory of the configuration file (unused: the host keys
            are written, so they live below the state directory, which the
            daemon resolves at start).

    Returns:
        The settings, with defaults where a value was missing or invalid.
    """
    del config_dir
    reader.check_keys(KEYS)
    host_key_dir = reader.get("host_key_dir", str, "ssh")
    if not host_key_dir or "\x00" in host_key_dir:
        reader.error("host_key_dir", "must be a non-empty path")
        host_key_dir = "ssh"
    return SshConfig(
        enabled=reader.get("enabled", bool, True),
        listen=reader.get("listen", str, "127.0.0.1"),
        port=reader.bounded_int("port", 2222, 0, 65535),
        host_key_dir=Path(host_key_dir),
        login_grace_time=reader.bounded_int("login_grace_time", 30, 1, 600),
        max_auth_tries=reader.bounded_int("max_auth_tries", 6, 1, 100),
        max_sessions=reader.bounded_int("max_sessions", 32, 1, 1024),
    )
