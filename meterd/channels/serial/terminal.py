"""The shell's :class:`~meterd.shell.Terminal` over a console port, with the line discipline.

Output is made safe for a serial terminal: newlines become CRLF and any other
control character (an escape sequence smuggled in through a user name, say)
is shown as ``?``, so nothing written can reprogram the operator's terminal.
"""

from __future__ import annotations

from meterd.channels.serial.line import LineEditor
from meterd.channels.serial.port import Port

#: Typed-ahead input kept beyond the line being edited; a noise burst beyond it is dropped.
MAX_TYPEAHEAD = 4096
_SAFE = {ord("\n"): "\r\n", ord("\t"): "\t"}
_CONTROL = {c: "?" for c in (*range(0x20), 0x7F) if c not in _SAFE}
_OUTPUT = str.maketrans({**_CONTROL, **_SAFE})


def render(text: str) -> bytes:
    """Return ``text`` as bytes for the line: CRLF newlines, no control characters, ASCII only."""
    return text.translate(_OUTPUT).encode("ascii", "replace")


class ConsoleTerminal:
    """A :class:`~meterd.shell.Terminal` on one attached port.

    Args:
        port: The attached device.
        max_line: Longest input line.
    """

    def __init__(self, port: Port, max_line: int) -> None:
        self._port = port
        self._editor = LineEditor(max_line)
        self._typeahead = bytearray()
        self._interrupted = False
        #: True while a :meth:`read_line` waits for input.
        self.reading = False

    @property
    def hung_up(self) -> bool:
        """True once the device hung up (nothing more can be read or written)."""
        return self._port.hung_up

    def interrupt(self) -> None:
        """Make the pending and every later :meth:`read_line` return None, until :meth:`resume`."""
        self._interrupted = True
        self._port.wake()

    def resume(self) -> None:
        """Clear an :meth:`interrupt` (the console is starting over at the login prompt)."""
        self._interrupted = False

    async def write(self, text: str) -> None:
        """Write ``text`` (newlines become CRLF; control characters are replaced)."""
        await self._port.write(render(text))

    async def read_line(self, prompt: str, *, echo: bool = True, max_line: int | None = None) -> str | None:
        """Show ``prompt`` and return the next line edited by the line discipline.

        Args:
            prompt: Shown before the input.
            echo: False for secrets: nothing typed is echoed.
            max_line: A shorter limit for this line (login names).

        Returns:
            The line, or None on hang-up, Ctrl-D on an empty line, or an interrupt.
        """
        if self._interrupted or self.hung_up:
            return None
        self.reading = True
        try:
            await self.write(prompt)
            self._editor.start(echo=echo, max_line=max_line)
            return await self._edit()
        finally:
            self.reading = False

    async def _edit(self) -> str | None:
        while True:
            while self._typeahead:
                byte = self._typeahead.pop(0)
                step = self._editor.feed(byte)
                if step.echo:
                    await self._port.write(step.echo)
                if step.eof:
                    return None
                if step.line is not None:
                    return step.line
            data = await self._port.read()
            if data is None or self._interrupted:
                return None
            room = MAX_TYPEAHEAD - len(self._typeahead)
            self._typeahead += data[:room]
