"""An open console device, read and written through the event loop without blocking.

Reads and writes use the file descriptor with ``loop.add_reader`` /
``loop.add_writer``, so a stalled line never blocks the daemon.  Any error
from the device (``EIO`` when a USB adapter is pulled or the far end of a pty
closes, ``EBADF``, end of file) is a hang-up, never an exception for the caller:
this is the one place device errors are converted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

READ_SIZE = 1024
#: How long output may wait for a stalled line (flow control, nobody reading) before it is dropped.
WRITE_TIMEOUT = 2.0


class Port:
    """A non-blocking file descriptor of a terminal device.

    Args:
        fd: The open descriptor (set non-blocking here).
        name: Device name for messages and the log.
        closer: Releases the device when the port closes (None: the owner keeps it open).
        initial: Bytes already read from the device while probing it.
    """

    def __init__(
        self, fd: int, name: str, closer: Callable[[], None] | None = None, initial: bytes = b""
    ) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.name = name
        self._closer = closer
        self._initial = initial
        self._waiter: asyncio.Future[None] | None = None
        self._woken = False
        self._stalled = False
        self.hung_up = False

    async def _wait(self, writable: bool, timeout: float | None) -> bool:
        """Wait until the fd is ready or :meth:`wake` is called; False on timeout."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter

        def ready() -> None:
            if not waiter.done():
                waiter.set_result(None)

        (loop.add_writer if writable else loop.add_reader)(self.fd, ready)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return False
        finally:
            (loop.remove_writer if writable else loop.remove_reader)(self.fd)
            self._waiter = None
        return True

    def wake(self) -> None:
        """Make a pending (or the next) :meth:`read` return ``b""`` now (the reader then checks why)."""
        self._woken = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self) -> bytes | None:
        """Return the next bytes, ``b""`` if woken, or None once the device hung up."""
        if self._initial:
            data, self._initial = self._initial, b""
            return data
        while not self.hung_up:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                if not self._woken:
                    await self._wait(False, None)
                if self._woken:
                    self._woken = False
                    return b""
                continue
            except OSError as e:
                log.info("serial device %s: %s", self.name, e)
                data = b""
            if not data:
                self.hung_up = True
                return None
            return data
        return None

    async def write(self, data: bytes) -> None:
        """Send ``data``; drop what a stalled line cannot take within :data:`WRITE_TIMEOUT`.

        Once a write has timed out the line counts as stalled, and output is
        dropped at once (not after another timeout) until it drains again, so
        a terminal that stops reading cannot slow the console down.
        """
        view = memoryview(data)
        while view and not self.hung_up:
            try:
                sent = os.write(self.fd, view)
            except BlockingIOError:
                if self._stalled or not await self._wait(True, WRITE_TIMEOUT):
                    self._stalled = True
                    log.debug("serial device %s stalled; %d bytes dropped", self.name, len(view))
                    return
                continue
            except OSError as e:
                log.info("serial device %s: %s", self.name, e)
                self.hung_up = True
                return
            self._stalled = False
            view = view[sent:]

    def close(self) -> None:
        """Release the device (if this port owns it)."""
        self.hung_up = True
        self.wake()
        if self._closer is not None:
            with contextlib.suppress(OSError):
                self._closer()
            self._closer = None
