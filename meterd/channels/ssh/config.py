"""The ``[ssh]`` section of ``meterd.toml``: validated, frozen settings of the SSH listener."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meterd.configspec import Base, Key, Section
from meterd.tomlreader import Reader


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
        max_startups: Connections at once that have not opened a session yet
            (unauthenticated, or authenticated with no session); more are closed at accept.
        max_startups_per_source: The same, from one peer address.
        no_session_timeout: Seconds an authenticated connection may stay with no
            session open before it is closed.
    """

    enabled: bool = True
    listen: str = "127.0.0.1"
    port: int = 2222
    host_key_dir: Path = Path("ssh")
    login_grace_time: int = 30
    max_auth_tries: int = 6
    max_sessions: int = 32
    max_startups: int = 30
    max_startups_per_source: int = 10
    no_session_timeout: int = 30

    def host_key_path(self, state_dir: Path) -> Path:
        """Return the host key directory for the daemon's ``state_dir``."""
        return state_dir / self.host_key_dir


SSH = Section(
    "ssh",
    "the SSH/SFTP listener",
    (
        Key("enabled", bool, True, "run the listener"),
        Key("listen", str, "127.0.0.1", "address to bind"),
        Key("port", int, 2222, "TCP port (0 picks a free one)", low=0, high=65535),
        Key("host_key_dir", Path, "ssh", "host keys, made on first start", base=Base.STATE),
        Key("login_grace_time", int, 30, "seconds a client has to authenticate", low=1, high=600),
        Key("max_auth_tries", int, 6, "authentication attempts per connection", low=1, high=100),
        Key(
            "max_sessions",
            int,
            32,
            "open shell and SFTP sessions, all connections together",
            low=1,
            high=1024,
        ),
        Key(
            "max_startups",
            int,
            30,
            "connections without a session yet; more are closed at accept",
            low=1,
            high=1024,
        ),
        Key("max_startups_per_source", int, 10, "the same, from one peer address", low=1, high=1024),
        Key(
            "no_session_timeout",
            int,
            30,
            "seconds an authenticated connection may hold no session",
            low=1,
            high=3600,
        ),
    ),
)


def load(reader: Reader, config_dir: Path) -> SshConfig:
    """Read the ``[ssh]`` table (declared in :data:`SSH`); problems go to the reader's error list.

    Args:
        reader: The ``ssh`` table.
        config_dir: Directory of the configuration file (unused: the host keys
            are written, so they live below the state directory, which the
            daemon resolves at start).

    Returns:
        The settings, with defaults where a value was missing or invalid.
    """
    del config_dir
    return SshConfig(**SSH.read(reader, {}))
