"""The meter shell's terminal over an SSH session channel."""

from __future__ import annotations

from typing import cast

import asyncssh

from meterd.record import record

#: Longest input line accepted; longer lines are cut (the shell then rejects them).
MAX_LINE = 8192


@record
class SessionStreams:
    """The streams of one shell, command or subsystem session channel (text mode).

    meterd serves sessions as asyncssh *stream* sessions rather than server
    processes, so an SFTP channel's data goes straight to the SFTP server,
    one layer less on every packet.

    Attributes:
        stdin: Input from the client.
        stdout: Output to the client.
        stderr: Error output to the client.
    """

    stdin: asyncssh.SSHReader[str]
    stdout: asyncssh.SSHWriter[str]
    stderr: asyncssh.SSHWriter[str]

    @property
    def channel(self) -> asyncssh.SSHServerChannel[str]:
        """The session channel."""
        # With a pty it is asyncssh's line-editor wrapper, which passes every call on to
        # the server channel; so this is a cast, not an isinstance check.
        return cast("asyncssh.SSHServerChannel[str]", self.stdin.channel)

    @property
    def command(self) -> str | None:
        """The command of an ``exec`` request, or None for a shell or subsystem."""
        return self.channel.get_command()

    @property
    def subsystem(self) -> str | None:
        """The requested subsystem, or None."""
        return self.channel.get_subsystem()

    def exit(self, status: int) -> None:
        """Send the exit status and close the channel."""
        self.channel.exit(status)


class SessionTerminal:
    """A :class:`~meterd.shell.Terminal` on an SSH session's streams (text mode).

    With a pty, asyncssh's line editor echoes input; echo is turned off for
    secrets.  Without a pty (``ssh host 'cmd'``, scripts), input is read
    line by line from the channel as sent.
    """

    def __init__(self, streams: SessionStreams) -> None:
        self._streams = streams

    async def write(self, text: str) -> None:
        """Write text; a closed channel swallows it (the reader sees end of input)."""
        if self._streams.channel.is_closing():
            return
        self._streams.stdout.write(text)
        await self._streams.stdout.drain()

    async def read_line(self, prompt: str, *, echo: bool = True) -> str | None:
        """Prompt and read one line; None at end of input or hang-up."""
        await self.write(prompt)
        # Only a pty session has asyncssh's line editor, and only the editor echoes.
        has_pty = self._streams.channel.get_terminal_type() is not None
        set_echo = getattr(self._streams.channel, "set_echo", None) if has_pty else None
        if set_echo is not None and not echo:
            set_echo(False)
        try:
            while True:
                try:
                    line = await self._streams.stdin.readline()
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
