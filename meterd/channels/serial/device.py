"""Getting hold of the console device: a pty meterd creates, or a real serial port.

Both offer :meth:`attach`, which waits (with back-off, never raising for a
device that is absent or gone) until someone can be talking on the line and
returns a :class:`~meterd.channels.serial.port.Port`.

* :class:`PtyDevice` creates a pseudo-terminal once and symlinks its slave
  path; a terminal program (picocom, screen, pyserial) opens the slave.  The
  daemon keeps only the master, so when the program closes the slave the
  master reports a hang-up, and :meth:`PtyDevice.attach` waits for the next one.
* :class:`TtyDevice` opens a real device with pyserial (line settings from the
  configuration); when the device vanishes (a USB adapter pulled) the port
  hangs up and :meth:`TtyDevice.attach` reopens it when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import termios
import tty
from pathlib import Path

import serial

from meterd.channels.serial.config import SerialConfig
from meterd.channels.serial.port import Port
from meterd.errors import ChannelError

log = logging.getLogger(__name__)

#: Back-off grows to this many times the configured reconnect interval.
MAX_BACKOFF_FACTOR = 8
_PARITY = {
    "none": serial.PARITY_NONE,
    "even": serial.PARITY_EVEN,
    "odd": serial.PARITY_ODD,
    "mark": serial.PARITY_MARK,
    "space": serial.PARITY_SPACE,
}


def prepare_line(fd: int) -> None:
    """Discard break conditions, and make reads wait for a byte.

    A break is ignored rather than flushing the queues or reading as NUL.
    ``VMIN=1`` matters: with pyserial's ``VMIN=0`` a read with nothing to
    read returns 0 bytes, which looks exactly like a hang-up.
    """
    attrs = termios.tcgetattr(fd)
    attrs[0] = (attrs[0] | termios.IGNBRK) & ~termios.BRKINT
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _link(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` in one step; refuse to replace anything but a symlink."""
    if os.path.lexists(link) and not link.is_symlink():
        raise ChannelError(f"serial link {link} exists and is not a symlink")
    link.parent.mkdir(parents=True, exist_ok=True)
    temporary = link.with_name(f".{link.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    os.symlink(target, temporary)
    os.replace(temporary, link)


class PtyDevice:
    """A pseudo-terminal created by meterd.

    Args:
        link: Where to symlink the slave's path.
        poll: Seconds between checks for a terminal program attaching.
    """

    def __init__(self, link: Path, poll: float) -> None:
        self._link = link
        self._poll = poll
        self._master = -1
        self.name = ""

    def open(self) -> None:
        """Create the pty and its link.

        Raises:
            ChannelError: No pty could be created or linked.
        """
        try:
            master, slave = os.openpty()
        except OSError as e:
            raise ChannelError(f"cannot create a pseudo-terminal: {e.strerror}") from e
        try:
            self.name = os.ttyname(slave)
            # Raw, so the pty itself neither echoes nor edits: the console's line discipline does.
            tty.setraw(slave)
            prepare_line(slave)
            _link(self._link, self.name)
        except OSError as e:
            os.close(master)
            raise ChannelError(f"cannot set up the pseudo-terminal: {e.strerror}") from e
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master = master

    async def attach(self) -> Port:
        """Wait until a terminal program has the slave open; return the master as a port."""
        while True:
            try:
                data = os.read(self._master, 1024)
            except BlockingIOError:
                return Port(self._master, self.name)
            except OSError as e:
                if e.errno != errno.EIO:  # EIO: nobody has the slave open yet
                    raise ChannelError(f"pseudo-terminal {self.name} failed: {e.strerror}") from e
            else:
                if data:
                    return Port(self._master, self.name, initial=data)
            await asyncio.sleep(self._poll)

    def close(self) -> None:
        """Remove the link and destroy the pty."""
        with contextlib.suppress(OSError):
            if self._link.is_symlink() and os.readlink(self._link) == self.name:
                self._link.unlink()
        if self._master >= 0:
            os.close(self._master)
            self._master = -1


class TtyDevice:
    """A real serial device, opened with pyserial.

    Args:
        config: Device path and line settings.
    """

    def __init__(self, config: SerialConfig) -> None:
        self._config = config
        self.name = config.device

    def _open(self) -> Port:
        c = self._config
        port = serial.Serial(
            port=c.device,
            baudrate=c.baud,
            bytesize=c.bytesize,
            parity=_PARITY[c.parity],
            stopbits=c.stopbits,
            timeout=0,
            exclusive=True,
        )
        try:
            prepare_line(port.fileno())
            return Port(port.fileno(), self.name, closer=port.close)
        except (OSError, termios.error):
            port.close()
            raise

    async def attach(self) -> Port:
        """Open the device, retrying with back-off while it is absent."""
        delay = self._config.reconnect_interval
        reported = False
        while True:
            try:
                return self._open()
            except (serial.SerialException, OSError, termios.error, ValueError) as e:
                # Say it once per outage, not once per attempt.
                (log.debug if reported else log.warning)("serial device %s unavailable: %s", self.name, e)
                reported = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._config.reconnect_interval * MAX_BACKOFF_FACTOR)

    def close(self) -> None:
        """Nothing to release: each attached port owns its open device."""
