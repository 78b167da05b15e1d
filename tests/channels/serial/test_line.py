"""The line discipline on its own: editing, limits, echo, hostile bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meterd.channels.serial.line import LineEditor, Step
from meterd.channels.serial.terminal import render


def feed(editor: LineEditor, data: bytes) -> tuple[bytes, list[str | None]]:
    """Return the echo and the lines (None for end of input) that ``data`` produced."""
    echo = b""
    lines: list[str | None] = []
    for byte in data:
        step: Step = editor.feed(byte)
        echo += step.echo
        if step.line is not None:
            lines.append(step.line)
        if step.eof:
            lines.append(None)
    return echo, lines


def test_plain_lines_with_any_line_ending() -> None:
    editor = LineEditor(64)
    echo, lines = feed(editor, b"one\rtwo\nthree\r\nfour\n\r")
    assert lines == ["one", "two", "three", "four", ""]
    assert echo.startswith(b"one\r\n")


def test_editing_keys() -> None:
    editor = LineEditor(64)
    _, lines = feed(editor, b"whoamx\x7fi\r")
    assert lines == ["whoami"]
    _, lines = feed(editor, b"rm -rf\x15whoami\r")
    assert lines == ["whoami"]
    echo, lines = feed(editor, b"half\x03")
    assert lines == [""]
    assert echo.endswith(b"^C\r\n")
    assert feed(editor, b"\x04")[1] == [None]
    assert feed(editor, b"x\x04\r")[1] == ["x"]  # Ctrl-D ends input only on an empty line
    assert feed(editor, b"\x08\x08ok\r")[1] == ["ok"]  # backspace on an empty line does nothing


def test_escape_sequences_and_control_bytes_are_dropped() -> None:
    editor = LineEditor(64)
    _, lines = feed(editor, b"\x1b[A\x1b[1;5Cab\x1bOPc\x00\x07\x1b]\x9b\xffd\r")
    assert lines == ["abcd"]


def test_overlong_line_is_cut_with_one_bell() -> None:
    editor = LineEditor(16)
    echo, lines = feed(editor, b"x" * 100 + b"\r")
    assert lines == ["x" * 16]
    assert echo.count(b"\a") == 1
    editor.start(max_line=4)
    assert feed(editor, b"abcdefgh\r")[1] == ["abcd"]


def test_echo_off_echoes_nothing_typed() -> None:
    editor = LineEditor(64)
    editor.start(echo=False)
    echo, lines = feed(editor, b"s3cret\x7f\x15pass word\r")
    assert lines == ["pass word"]
    assert echo == b"\r\n"


@given(st.binary(max_size=2000))
def test_any_input_yields_bounded_printable_lines(data: bytes) -> None:
    editor = LineEditor(32)
    _, lines = feed(editor, data)
    for line in lines:
        if line is not None:
            assert len(line) <= 32
            assert all(0x20 <= ord(c) < 0x7F for c in line)


def test_output_cannot_carry_control_sequences() -> None:
    assert render("a\nb\tc") == b"a\r\nb\tc"
    assert render("\x1b]0;owned\x07\x1b[2J") == b"?]0;owned??[2J"
    assert render("caf\u00e9") == b"caf?"
