"""The serial-console listener: owns the device and runs the console on it, forever.

Nothing the line does stops the console: a hang-up, a vanished device or an
unexpected error in one attachment ends that attachment (and its session),
and the supervisor attaches again after the reconnect interval.

The console itself (login, line editing, the shell) loads when a terminal
first attaches: a meter nobody has plugged into holds only the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from meterd.channels.serial.config import SerialConfig
from meterd.channels.serial.device import PtyDevice, TtyDevice
from meterd.runtime import Runtime

if TYPE_CHECKING:
    from meterd.channels.serial.console import Console

log = logging.getLogger(__name__)

STOP_TIMEOUT = 5.0


class SerialListener:
    """Serves the login prompt and meter shell on the configured serial device.

    Args:
        config: The ``[serial]`` settings.
        runtime: The daemon's guard, meter and state directory.
    """

    name = "serial"

    def __init__(self, config: SerialConfig, runtime: Runtime) -> None:
        self._config = config
        self._runtime = runtime
        self._device: PtyDevice | TtyDevice
        if config.is_pty:
            self._device = PtyDevice(config.link_path(runtime.state_dir), config.reconnect_interval)
        else:
            self._device = TtyDevice(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def device_path(self) -> str:
        """The device the console runs on (for a pty, the slave a terminal program opens)."""
        return self._device.name

    async def start(self) -> None:
        """Create the pty (and its link) or begin watching for the device.

        A real device that is absent at start is not an error: a USB adapter
        may be plugged in later.

        Raises:
            ChannelError: A pty was asked for and could not be created or linked.
        """
        if isinstance(self._device, PtyDevice):
            self._device.open()
            link = self._config.link_path(self._runtime.state_dir)
            log.info("serial console on %s (linked from %s)", self._device.name, link)
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name="serial-console")

    async def _supervise(self) -> None:
        console: Console | None = None
        while True:
            port = await self._device.attach()
            log.info("serial console attached on %s", port.name)
            # See the module docstring.
            from meterd.channels.serial.console import Console  # noqa: PLC0415
            from meterd.channels.serial.terminal import ConsoleTerminal  # noqa: PLC0415

            try:
                console = console or Console(self._runtime, self._config, f"serial:{self._device.name}")
                await console.serve(ConsoleTerminal(port, self._config.max_line))
            except Exception:  # a console bug must not take the daemon down; start over
                log.exception("serial console failed; restarting it")
            finally:
                port.close()
            await asyncio.sleep(self._config.reconnect_interval)

    async def stop(self) -> None:
        """Stop the console (its session ends as a hang-up) and release the device."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, STOP_TIMEOUT)
            self._task = None
        self._device.close()
