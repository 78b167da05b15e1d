"""The serial console: a login prompt and the meter shell on a serial line or a pty.

See :mod:`meterd.channels.serial.console` for the state machine and
:mod:`meterd.channels.serial.line` for the line discipline.
"""

from meterd.channels.serial.config import SerialConfig, load
from meterd.channels.serial.listener import SerialListener

__all__ = ["SerialConfig", "SerialListener", "load"]
