"""The front-panel channel: newline-delimited JSON over a Unix socket.

See :mod:`meterd.channels.panel.protocol` for the messages and
:mod:`meterd.channels.panel.actions` for what each action needs.

:class:`PanelListener` is imported on first use, so reading the daemon's
configuration (which needs :data:`LOADER`) loads neither the listener nor
the guard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterd.channels.panel.config import LOADER, PanelConfig

if TYPE_CHECKING:
    from meterd.channels.panel.listener import PanelListener

__all__ = ["LOADER", "PanelConfig", "PanelListener"]


def __getattr__(name: str) -> object:
    if name == "PanelListener":
        from meterd.channels.panel.listener import PanelListener  # noqa: PLC0415 - see module docstring

        return PanelListener
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
