"""The ``[ssh]`` section of ``meterd.toml``: validated, frozen settings of the SSH listener."""

from __future__ import annotations

from pathlib import Path

from meterd.configspec import Base, Key, Loader, Section
from meterd.record import record

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
            "connections without a session; past it a newcomer takes the busiest source's oldest",
            low=1,
            high=1024,
        ),
        Key(
            "max_startups_per_source",
            int,
            10,
            "the same from one source (IPv4 address, IPv6 /64); more are closed at accept",
            low=1,
            high=1024,
        ),
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


@record
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
        max_startups: Connections at once with no session open (unauthenticated, or
            authenticated with none); past it a newcomer takes the slot of the busiest
            source's oldest, which is closed.
        max_startups_per_source: The same from one source (an IPv4 address, an IPv6 /64);
            more are closed at accept.
        no_session_timeout: Seconds an authenticated connection may stay with no
            session open before it is closed.
    """

    enabled: bool = SSH.default("enabled")
    listen: str = SSH.default("listen")
    port: int = SSH.default("port")
    host_key_dir: Path = SSH.default("host_key_dir")
    login_grace_time: int = SSH.default("login_grace_time")
    max_auth_tries: int = SSH.default("max_auth_tries")
    max_sessions: int = SSH.default("max_sessions")
    max_startups: int = SSH.default("max_startups")
    max_startups_per_source: int = SSH.default("max_startups_per_source")
    no_session_timeout: int = SSH.default("no_session_timeout")

    def host_key_path(self, state_dir: Path) -> Path:
        """Return the host key directory for the daemon's ``state_dir``."""
        return state_dir / self.host_key_dir


#: Reads ``[ssh]``; its host key directory is kept as written (the daemon takes it below
#: the state directory at start, :meth:`SshConfig.host_key_path`).
LOADER = Loader(SSH, SshConfig)
