"""The meter shell's terminal over an SSH session channel."""

from __future__ import annotations

import asyncssh

#: Longest input line accepted; longer lines are cut (the shell then rejects them).
MAX_LINE = 8192


class ProcessTerminal:
    """A :class:`~meterd.shell.Terminal` on an asyncssh server process (text mode).

    With a pty, asyncssh's line editor echoes input; echo is turned off for
    secrets.  Without a pty (``ssh host 'cmd'``, scripts), input is read
    line by line from the channel as sent.
    """

    def __init__(self, process: asyncssh.SSHServerProcess[str]) -> None:
        self._process = process

    async def write(self, text: str) -> None:
        """Write text; a closed channel swallows it (the reader sees end of input)."""
        if self._process.channel.is_closing():
            return
        self._process.stdout.write(text)
        await self._process.stdout.drain()

    async def read_line(self, prompt: str, *, echo: bool = True) -> str | None:
        """Prompt and read one line; None at end of input or hang-up."""
        await self.write(prompt)
        # Only a pty session has asyncssh's line editor, and only the editor echoes.
        has_pty = self._process.channel.get_terminal_type() is not None
        set_echo = getattr(self._process.channel, "set_echo", None) if has_pty else None
        if set_echo is not None and not echo:
            set_echo(False)
        try:
            while True:
                try:
                    line = await self._process.stdin.readline()
                except (asyncssh.TerminalSizeChanged, asyncssh.SignalReceived):
                    continue
                except (asyncssh.BreakReceived, asyncssh.Error, OSError):
                    return None
                break
        finally:
            if set_echo is not None and not echo:
                set_echo(True)
                await self.write("\n")
        if not line:
            return None
        return line[:MAX_LINE].rstrip("\r\n")
