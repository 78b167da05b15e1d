"""What the shell needs from a transport, and the exit statuses it returns."""

from __future__ import annotations

from typing import Protocol

#: The command ran.
EXIT_OK = 0
#: The guard refused the command, or the meter refused the action.
EXIT_DENIED = 1
#: The command line was malformed (unknown command, wrong arguments).
EXIT_USAGE = 2


class Terminal(Protocol):
    """A line-oriented text terminal (an SSH channel, a serial port)."""

    async def write(self, text: str) -> None:
        """Write ``text`` as is (the shell supplies the newlines)."""

    async def read_line(self, prompt: str, *, echo: bool = True) -> str | None:
        """Show ``prompt`` and return the next line without its newline.

        Args:
            prompt: Text shown before the input.
            echo: False for secrets (the transport must not echo them).

        Returns:
            The line, or None on end of input or hang-up.
        """
