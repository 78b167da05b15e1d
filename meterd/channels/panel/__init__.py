"""The front-panel channel: newline-delimited JSON over a Unix socket.

See :mod:`meterd.channels.panel.protocol` for the messages and
:mod:`meterd.channels.panel.actions` for what each action needs.
"""

from meterd.channels.panel.config import PanelConfig, load
from meterd.channels.panel.listener import PanelListener

__all__ = ["PanelConfig", "PanelListener", "load"]
