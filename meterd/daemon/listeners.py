"""Building the configured channels (the only module that knows every channel).

Channel modules are imported only when their channel is enabled, so a meter
without Modbus never loads pymodbus (start-up time and memory are budgets).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from meterd.config import DaemonConfig
from meterd.runtime import Listener, Runtime

if TYPE_CHECKING:
    from meterd.channels.modbus.server_tls import ServerTls


def check_channel_files(config: DaemonConfig) -> asyncio.Task[ServerTls] | None:
    """Begin the check of files a channel loads, so that it runs while the rest starts.

    The Modbus/TCP Security certificate, key and CA are checked in a separate
    interpreter (tens of milliseconds); the Modbus listener awaits the task
    before it binds, so a bad file still stops the start before it listens.
    Call it once the files are final (after the demo PKI is in place).
    """
    if config.modbus is None or not config.modbus.enabled or not config.modbus.tls.enabled:
        return None
    from meterd.channels.modbus.server_tls import ServerTls  # noqa: PLC0415 - see module docstring

    task = asyncio.create_task(ServerTls.checked(config.modbus.tls))
    # A start that fails before the listener awaits it must not leave an unread error behind.
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task


def build_listeners(
    config: DaemonConfig, runtime: Runtime, modbus_tls: asyncio.Task[ServerTls] | None = None
) -> list[Listener]:
    """Return a listener for every enabled channel, in start order.

    ``modbus_tls`` is the check :func:`check_channel_files` began, if it did.
    """
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

        listeners.append(ModbusListener(config.modbus, runtime, tls_check=modbus_tls))
    return listeners
