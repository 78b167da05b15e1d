"""What a command handler works with: the runtime, the session, the terminal, its arguments."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from meterd.errors import ChannelError
from meterd.guard import Session
from meterd.policy.request import Decision
from meterd.runtime import Runtime
from meterd.shell.terminal import Terminal


class UsageError(ChannelError):
    """The arguments do not fit the command; the shell prints its usage (exit 2)."""


@dataclass(slots=True)
class Context:
    """One command's invocation.

    Attributes:
        runtime: The daemon's shared parts.
        session: Whose command it is.
        terminal: Where output goes.
        args: The words after the command words.
        decision: The guard's allow for the command (None for ``exit`` and
            while the command's pre-check runs, before the guard is asked).
    """

    runtime: Runtime
    session: Session
    terminal: Terminal
    args: Sequence[str]
    decision: Decision | None

    async def line(self, text: str = "") -> None:
        """Write one line."""
        await self.terminal.write(text + "\n")

    async def fields(self, pairs: Iterable[tuple[str, object]]) -> None:
        """Write ``key: value`` lines."""
        await self.terminal.write("".join(f"{k}: {_text(v)}\n" for k, v in pairs))

    async def table(self, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        """Write columns padded with spaces (never tabs), header first."""
        cells = [list(header), *([_text(c) for c in row] for row in rows)]
        widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
        out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
        await self.terminal.write("".join(line + "\n" for line in out))


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("\t", " ").replace("\n", " ")


Handler = Callable[[Context], Awaitable[int]]
#: A command's pre-check (its result is ignored): raises :class:`UsageError` or a
#: :class:`~meterd.errors.MeterdError` if the command cannot succeed; changes nothing.
Check = Callable[[Context], object]


def key_values(args: Sequence[str]) -> dict[str, str]:
    """Parse ``key=value`` words.

    Raises:
        UsageError: A word has no ``=`` or an empty key.
    """
    out: dict[str, str] = {}
    for word in args:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise UsageError(f"expected key=value, got {word!r}")
        out[key] = value
    return out
