"""The serial console: a login prompt and the meter shell on a serial line or a pty.

See :mod:`meterd.channels.serial.console` for the state machine and
:mod:`meterd.channels.serial.line` for the line discipline.

:class:`SerialListener` is imported on first use, so reading the daemon's
configuration (which needs :data:`LOADER`) loads none of the listener,
pyserial, the shell or the guard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterd.channels.serial.config import LOADER, SerialConfig

if TYPE_CHECKING:
    from meterd.channels.serial.listener import SerialListener

__all__ = ["LOADER", "SerialConfig", "SerialListener"]


def __getattr__(name: str) -> object:
    if name == "SerialListener":
        from meterd.channels.serial.listener import SerialListener  # noqa: PLC0415 - see module docstring

        return SerialListener
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
