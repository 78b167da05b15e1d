"""The ``[panel]`` section of ``meterd.toml``: the front-panel socket and its limits."""

from __future__ import annotations

from pathlib import Path

from meterd.configspec import Base, Key, Loader, Section
from meterd.record import record

#: Bits a panel socket may never grant: anyone outside the owner and group.
_OTHER_BITS = 0o007


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


@record
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

    enabled: bool = PANEL.default("enabled")
    socket: Path = PANEL.default("socket")
    mode: int = PANEL.default("mode")
    max_message: int = PANEL.default("max_message")
    max_clients: int = PANEL.default("max_clients")
    max_sessions: int = PANEL.default("max_sessions")
    rate: int = PANEL.default("rate")
    burst: int = PANEL.default("burst")

    def socket_path(self, state_dir: Path) -> Path:
        """Return the socket's absolute path for the daemon's ``state_dir``."""
        return state_dir / self.socket


#: Reads ``[panel]``; its socket is kept as written (the daemon takes it below the state
#: directory at start, :meth:`PanelConfig.socket_path`).
LOADER = Loader(PANEL, PanelConfig)
