"""A generated block in a Markdown file: the text between a begin and an end marker line.

The README keeps tables rendered from the code (the shell's commands, the
configuration keys); a test compares each copy with its rendering, and the
generators rewrite them in place.  A leaf.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from meterd.errors import MeterdError
from meterd.record import record


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


@record
class Block:
    """One generated block of a README.

    Attributes:
        what: What it is, for the stale message (``the shell command table``).
        begin: The begin marker line.
        end: The end marker line.
        render: Renders the block from the code.
    """

    what: str
    begin: str
    end: str
    render: Callable[[], str]


def generator_main(argv: Sequence[str] | None, *, prog: str, doc: str | None, blocks: Sequence[Block]) -> int:
    """The command line of a generator: print its blocks, or check or update a README's copies.

    Args:
        argv: The arguments (None: the process's).
        prog: How the generator is run (``python -m ...``).
        doc: Its description.
        blocks: The blocks it renders, each between its own markers in the README.

    Returns:
        0 ok, 1 stale, 2 bad input.
    """
    parser = argparse.ArgumentParser(prog=prog, description=doc)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", type=Path, metavar="README", help="exit 1 if README's copy is stale")
    group.add_argument("--update", type=Path, metavar="README", help="rewrite README's copy in place")
    args = parser.parse_args(argv)
    path: Path | None = args.check or args.update
    if path is None:
        sys.stdout.write("\n".join(block.render() for block in blocks))
        return 0
    try:
        text = path.read_text(encoding="utf-8")
        if args.check:
            stale = [block for block in blocks if embedded(text, block.begin, block.end) != block.render()]
            for block in stale:
                print(f"{path}: {block.what} is stale; run with --update", file=sys.stderr)
            return 1 if stale else 0
        for block in blocks:
            text = replaced(text, block.begin, block.end, block.render())
        path.write_text(text, encoding="utf-8")
    except (OSError, ReferenceError) as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 2
    return 0
