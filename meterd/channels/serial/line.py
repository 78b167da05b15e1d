"""The console's line discipline: bounded line editing over raw bytes.

I/O-free: :class:`LineEditor` takes input bytes one at a time and says what
to echo and when a line is complete.  What a serial line can throw at it —
line noise, a break (read as NUL), escape sequences from arrow keys, bytes
that are not ASCII — never reaches a line: only printable ASCII is kept.

Keys: Enter (CR, LF or CRLF) ends the line; Backspace/DEL erases a
character; Ctrl-U erases the line; Ctrl-C abandons it (an empty line);
Ctrl-D on an empty line is end of input.  A line never exceeds ``max_line``
characters: further ones are dropped with one bell.  With echo off
(passwords) nothing typed is echoed, not even a placeholder.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from meterd.record import record

CR, LF, BS, DEL, ESC = 0x0D, 0x0A, 0x08, 0x7F, 0x1B
CTRL_C, CTRL_D, CTRL_U = 0x03, 0x04, 0x15
BELL = b"\a"
NEWLINE = b"\r\n"
ERASE = b"\b \b"
#: Longest escape sequence swallowed before giving up on it.
MAX_ESCAPE = 16


class _State(enum.Enum):
    TEXT = enum.auto()
    ESCAPE = enum.auto()  # after ESC
    CSI = enum.auto()  # after ESC [ : parameters until a final byte
    SS3 = enum.auto()  # after ESC O : one more byte


@record
class Step:
    """What one input byte did.

    Attributes:
        echo: Bytes to send back to the terminal.
        line: The completed line, if this byte ended one.
        eof: True if this byte asked to end the input (Ctrl-D on an empty line).
    """

    echo: bytes = b""
    line: str | None = None
    eof: bool = False


_NOTHING = Step()


class LineEditor:
    """Edits one line at a time.

    Args:
        max_line: Longest line kept.
    """

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.echo = True
        self._chars: list[str] = []
        self._state = _State.TEXT
        self._escape_length = 0
        self._after_cr = False
        self._rang = False
        self._limit = max_line

    def start(self, *, echo: bool = True, max_line: int | None = None) -> None:
        """Begin a new line, with or without echo, optionally shorter than the default."""
        self.echo = echo
        self._chars = []
        self._rang = False
        self._limit = min(self.max_line, max_line or self.max_line)

    @property
    def pending(self) -> str:
        """The characters typed so far on the current line."""
        return "".join(self._chars)

    def feed(self, byte: int) -> Step:
        """Process one input byte."""
        after_cr, self._after_cr = self._after_cr, False
        if self._state is not _State.TEXT:
            return self._escape(byte)
        if 0x20 <= byte < 0x7F:
            return self._printable(byte)
        if byte == LF and after_cr:
            return _NOTHING  # the LF of a CRLF
        key = _KEYS.get(byte)
        # Other control characters, NUL from a break, and bytes beyond ASCII are dropped.
        return key(self) if key is not None else _NOTHING

    def _carriage_return(self) -> Step:
        self._after_cr = True
        return self._line_feed()

    def _line_feed(self) -> Step:
        line, self._chars = "".join(self._chars), []
        return Step(NEWLINE, line)

    def _erase_char(self) -> Step:
        if not self._chars:
            return _NOTHING
        self._chars.pop()
        return Step(ERASE if self.echo else b"")

    def _erase_line(self) -> Step:
        erased, self._chars = len(self._chars), []
        return Step(ERASE * erased if self.echo else b"")

    def _cancel(self) -> Step:
        self._chars = []
        return Step(b"^C" + NEWLINE, "")

    def _end_of_input(self) -> Step:
        return Step(NEWLINE, eof=True) if not self._chars else _NOTHING

    def _escape_start(self) -> Step:
        self._state, self._escape_length = _State.ESCAPE, 0
        return _NOTHING

    def _printable(self, byte: int) -> Step:
        if len(self._chars) >= self._limit:
            if self._rang:
                return _NOTHING
            self._rang = True
            return Step(BELL)
        self._chars.append(chr(byte))
        return Step(bytes((byte,)) if self.echo else b"")

    def _escape(self, byte: int) -> Step:
        self._escape_length += 1
        if self._state is _State.ESCAPE:
            self._state = {ord("["): _State.CSI, ord("O"): _State.SS3}.get(byte, _State.TEXT)
        elif self._state is _State.SS3 or 0x40 <= byte <= 0x7E or self._escape_length > MAX_ESCAPE:
            self._state = _State.TEXT
        return _NOTHING


_KEYS: dict[int, Callable[[LineEditor], Step]] = {
    CR: LineEditor._carriage_return,
    LF: LineEditor._line_feed,
    BS: LineEditor._erase_char,
    DEL: LineEditor._erase_char,
    CTRL_U: LineEditor._erase_line,
    CTRL_C: LineEditor._cancel,
    CTRL_D: LineEditor._end_of_input,
    ESC: LineEditor._escape_start,
}
