"""The ``[panel]`` section of ``meterd.toml``: the front-panel socket and its limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meterd.configspec import Base, Key, Section
from meterd.tomlreader import Reader

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


def _owner_and_group(mode: int) -> str | None:
    return f"must not grant access to others, not {mode:#o}" if mode & _OTHER_BITS else None


PANEL = Section(
    "panel",
    "the front-panel socket",
    (
        Key("enabled", bool, True, "run the channel"),
        Key("socket", Path, "panel.sock", "the Unix socket", base=Base.STATE),
        Key(
            "mode",
            int,
            0o660,
            "permission bits of the socket (never for others)",
            low=0o600,
            high=0o770,
            check=_owner_and_group,
            octal=True,
        ),
        Key("max_message", int, 4096, "longest message in bytes, newline included", low=256, high=65536),
        Key("max_clients", int, 8, "connections served at once", low=1, high=64),
        Key("max_sessions", int, 4, "panel sessions one connection may hold", low=1, high=16),
        Key("rate", int, 20, "messages per second a connection may send on average", low=1, high=1000),
        Key("burst", int, 40, "messages a connection may send at once above rate", low=1, high=1000),
    ),
)


def load(reader: Reader, config_dir: Path) -> PanelConfig:
    """Read the ``[panel]`` table (declared in :data:`PANEL`); problems go to the reader's error list.

    Args:
        reader: The section's reader.
        config_dir: Directory of the configuration file (unused: meterd creates
            the socket, so it lives below the state directory, which the
            daemon resolves at start).

    Returns:
        The settings, with defaults where a value was missing or invalid.
    """
    del config_dir
    return PanelConfig(**PANEL.read(reader, {}))
