"""Building the configured channels (the only module that knows every channel).

Channel modules are imported only when their channel is enabled, so a meter
without Modbus never loads pymodbus (start-up time and memory are budgets).
"""

from __future__ import annotations

from meterd.config import DaemonConfig
from meterd.runtime import Listener, Runtime


def build_listeners(config: DaemonConfig, runtime: Runtime) -> list[Listener]:
    """Return a listener for every enabled channel, in start order."""
    listeners: list[Listener] = []
    if config.ssh is not None:
        from meterd.channels.ssh import SshListener  # noqa: PLC0415 - see module docstring

        listeners.append(SshListener(config.ssh, runtime))
    if config.serial is not None:
        from meterd.channels.serial import SerialListener  # noqa: PLC0415

        listeners.append(SerialListener(config.serial, runtime))
    if config.panel is not None:
        from meterd.channels.panel import PanelListener  # noqa: PLC0415

        listeners.append(PanelListener(config.panel, runtime))
    if config.modbus is not None:
        from meterd.channels.modbus import ModbusListener  # noqa: PLC0415

        listeners.append(ModbusListener(config.modbus, runtime))
    return listeners
