"""The ``[panel]`` section of ``meterd.toml``: the front-panel socket and its limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meterd.tomlreader import Reader

_KEYS = ("enabled", "socket", "mode", "max_message", "max_clients", "max_sessions", "rate", "burst")
#: Bits a panel socket may never grant: anyone outside the owner and group.
_OTHER_BITS = 0o007


@dataclass(frozen=True, slots=True)
class PanelConfig:
    """Front-panel channel settings.

    Attributes:
        enabled: Whether the daemon runs the channel.
        socket: Socket path; a relative path is taken below the state directory.
        mode: Permission bits of the socket file (never any bit for others).
        max_message: Longest accepted message in bytes, newline included.
        max_clients: Connections served at once; more are closed on accept.
        max_sessions: Panel sessions one connection may hold at once.
        rate: Messages per second a connection may send on average.
        burst: Messages a connection may send at once above ``rate``.
    """

    enabled: bool = True
    socket: Path = Path("panel.sock")
    mode: int = 0o660
    max_message: int = 4096
    max_clients: int = 8
    max_sessions: int = 4
    rate: int = 20
    burst: int = 40

    def socket_path(self, state_dir: Path) -> Path:
        """Return the socket's absolute path for the daemon's ``state_dir``."""
        return state_dir / self.socket


def load(reader: Reader, config_dir: Path) -> PanelConfig:
    """Read the ``[panel]`` table; problems go to the reader's error list.

    Args:
        reader: The section's reader.
        config_dir: Directory of the configuration file (unused: meterd creates
            the socket, so it lives below the state directory, which the
            daemon resolves at start).

    Returns:
        The settings, with defaults where a value was missing or invalid.
    """
    del config_dir
    reader.check_keys(_KEYS)
    d = PanelConfig()
    socket = reader.get("socket", str, str(d.socket))
    if not socket or "\x00" in socket:
        reader.error("socket", "must be a non-empty path")
        socket = str(d.socket)
    mode = reader.bounded_int("mode", d.mode, 0o600, 0o770)
    if mode & _OTHER_BITS:
        reader.error("mode", f"must not grant access to others, not {mode:#o}")
        mode = d.mode
    return PanelConfig(
        enabled=reader.get("enabled", bool, d.enabled),
        socket=Path(socket),
        mode=mode,
        max_message=reader.bounded_int("max_message", d.max_message, 256, 65536),
        max_clients=reader.bounded_int("max_clients", d.max_clients, 1, 64),
        max_sessions=reader.bounded_int("max_sessions", d.max_sessions, 1, 16),
        rate=reader.bounded_int("rate", d.rate, 1, 1000),
        burst=reader.bounded_int("burst", d.burst, 1, 1000),
    )
