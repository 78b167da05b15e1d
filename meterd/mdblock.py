"""A generated block in a Markdown file: the text between a begin and an end marker line.

The README keeps tables rendered from the code (the shell's commands, the
configuration keys); a test compares each copy with its rendering, and the
generators rewrite them in place.  A leaf.
"""

from __future__ import annotations

from meterd.errors import MeterdError


class ReferenceError(MeterdError):
    """The README has no single, well-ordered pair of markers."""


def span(text: str, begin: str, end: str) -> tuple[int, int]:
    """Return where the block's content starts and ends in ``text``.

    Raises:
        ReferenceError: The markers are missing, repeated or out of order.
    """
    if text.count(begin) != 1 or text.count(end) != 1:
        raise ReferenceError(f"expected one {begin!r} and one {end!r} line")
    start = text.index(begin) + len(begin) + 1
    stop = text.index(end)
    if stop < start:
        raise ReferenceError("the end marker comes before the begin marker")
    return start, stop


def embedded(text: str, begin: str, end: str) -> str:
    """Return the block currently between the markers of ``text`` (see :func:`span`)."""
    start, stop = span(text, begin, end)
    return text[start:stop]


def replaced(text: str, begin: str, end: str, block: str) -> str:
    """Return ``text`` with the block between the markers replaced by ``block`` (see :func:`span`)."""
    start, stop = span(text, begin, end)
    return text[:start] + block + text[stop:]
