"""One shell command's declaration: its words, permission, resource, handler and usage."""

from __future__ import annotations

from meterd.policy.permissions import Permission
from meterd.record import record
from meterd.shell.context import Check, Handler


@record
class Command:
    """One shell command.

    Attributes:
        words: The command words (``("show", "readings")``).
        permission: What the guard must allow; None only for ``exit``.
        resource: The meter resource the command acts on.
        handler: Runs after an allow.
        args: Argument synopsis for the usage line.
        summary: One line for ``help``.
        min_args: Fewest argument words.
        max_args: Most argument words (None: no limit).
        check: The pre-check: refuses, changing nothing, arguments or a target
            the handler would refuse.  The shell runs it before asking the
            guard, and only for a session the policy grants ``permission``,
            so it tells nobody else whether a file, user or certificate exists.
        approver: A second person's command (``approvals``, ``approve``,
            ``reject``): ``help`` lists it only for a session that holds a
            permission under dual control, the only ones that could approve.
    """

    words: tuple[str, ...]
    permission: Permission | None
    resource: str
    handler: Handler
    args: str = ""
    summary: str = ""
    min_args: int = 0
    max_args: int | None = 0
    check: Check | None = None
    approver: bool = False

    @property
    def name(self) -> str:
        """The command words joined by spaces."""
        return " ".join(self.words)

    @property
    def usage(self) -> str:
        """``name ARGS``."""
        return f"{self.name} {self.args}".rstrip()
