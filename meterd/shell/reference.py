"""The shell's command reference, rendered from the command table as Markdown for the README.

``python -m meterd.shell.reference`` prints the table; ``--update README.md``
replaces the README's copy (between :data:`BEGIN` and :data:`END`), and
``--check README.md`` exits 1 if that copy is stale.  A test keeps the
README's copy equal to the rendering, so a command added to the table must
be added to the README in the same change.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

from meterd import mdblock
from meterd.mdblock import ReferenceError
from meterd.shell.command import Command
from meterd.shell.commands import COMMANDS

BEGIN = "<!-- shell-commands:begin -->"
END = "<!-- shell-commands:end -->"

__all__ = ["BEGIN", "END", "ReferenceError", "embedded", "main", "markdown_table", "updated"]


def _cell(text: str) -> str:
    # A "|" inside a code span would still end a GitHub table cell.
    return text.replace("|", "\\|")


def markdown_table(commands: Iterable[Command] = COMMANDS) -> str:
    """Return the commands as a Markdown table: usage, permission, resource, description."""
    lines = ["| command | permission | resource | what it does |", "|---|---|---|---|"]
    for command in commands:
        permission = f"`{command.permission.value}`" if command.permission is not None else "none"
        lines.append(
            f"| `{_cell(command.usage)}` | {permission} | `{command.resource}` | {_cell(command.summary)} |"
        )
    return "\n".join(lines) + "\n"


def embedded(text: str) -> str:
    """Return the table currently between the markers of ``text``.

    Raises:
        ReferenceError: The markers are missing, repeated or out of order.
    """
    return mdblock.embedded(text, BEGIN, END)


def updated(text: str) -> str:
    """Return ``text`` with the block between the markers replaced by the current table.

    Raises:
        ReferenceError: The markers are missing, repeated or out of order.
    """
    return mdblock.replaced(text, BEGIN, END, markdown_table())


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table, or check or update a README's copy; 0 ok, 1 stale, 2 bad input."""
    return mdblock.generator_main(
        argv,
        prog="python -m meterd.shell.reference",
        doc=__doc__,
        blocks=(mdblock.Block("the shell command table", BEGIN, END, markdown_table),),
    )


if __name__ == "__main__":
    sys.exit(main())
