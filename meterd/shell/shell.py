"""The interpreter: parse a line, ask the guard, run the handler, report.

Invariants:
    * A handler runs only after the guard allowed the command's permission
      (``exit`` needs none); a refusal prints ``denied: <permission> (<why>)``.
    * A command that cannot succeed (bad arguments, a missing or malformed
      file, an unknown user or certificate) is refused by its pre-check
      before the guard is asked, so it opens no dual-control request and
      spends no lockout period; nothing is recorded, as nothing was decided.
      The pre-check runs only when the policy grants the session the
      command's permission: anyone else gets the guard's recorded denial and
      learns nothing about the meter's files, users or certificates.
    * An action the meter refuses after an allow is recorded with outcome
      ``error``, so the log shows the attempt did not take effect.
    * The interactive loop ends on ``exit``, end of input, the guard closing
      the session, or the policy's idle timeout (the session is then closed
      as timed out).
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import shlex

from meterd.errors import MeterdError
from meterd.guard import Session
from meterd.guard.dual_control import PendingApproval
from meterd.runtime import Runtime
from meterd.shell.command import Command
from meterd.shell.commands import COMMANDS, find
from meterd.shell.context import Context, UsageError
from meterd.shell.terminal import EXIT_DENIED, EXIT_OK, EXIT_USAGE, Terminal

log = logging.getLogger(__name__)

PROMPT = "meter> "
MAX_LINE = 4096


class MeterShell:
    """The meter shell of one session.

    Args:
        runtime: The daemon's shared parts.
        session: The guard session the commands run in.
        terminal: Where to read and write.
    """

    def __init__(self, runtime: Runtime, session: Session, terminal: Terminal) -> None:
        self._runtime = runtime
        self._session = session
        self._terminal = terminal
        self._notices: set[asyncio.Task[None]] = set()
        self.exited = False

    async def run(self) -> None:
        """Read and execute commands until ``exit``, end of input, idle timeout or session end."""
        guard = self._runtime.guard
        await self._terminal.write(
            f"meter shell; {self._session.principal} on {self._session.channel.value}; type help\n"
        )
        while not self.exited and not self._session.closed:
            idle = guard.policy.settings.session_idle_timeout
            try:
                line = await asyncio.wait_for(self._terminal.read_line(PROMPT), idle)
            except TimeoutError:
                await self._terminal.write("\nsession closed: idle timeout\n")
                await guard.close_session(self._session, timed_out=True)
                return
            if line is None:
                return
            await self.execute(line)

    async def execute(self, line: str) -> int:
        """Run one command line.

        Returns:
            0 if it ran, 1 if the guard or the meter refused it, 2 for bad usage.
        """
        try:
            if len(line) > MAX_LINE:
                raise ValueError("line too long")
            words = shlex.split(line, comments=True)
        except ValueError as e:
            await self._terminal.write(f"error: {e}\n")
            return EXIT_USAGE
        if not words:
            return EXIT_OK
        found = find(words)
        if found is None:
            return await self._unknown(words)
        command, args = found
        if len(args) < command.min_args or (command.max_args is not None and len(args) > command.max_args):
            await self._terminal.write(f"usage: {command.usage}\n")
            return EXIT_USAGE
        if command.permission is None:
            self.exited = True
            return EXIT_OK
        return await self._run(command, list(args))

    async def _unknown(self, words: list[str]) -> int:
        names = sorted({c.words[0] for c in COMMANDS})
        close = difflib.get_close_matches(words[0], names, n=1)
        hint = f'; did you mean "{close[0]}"?' if close else "; type help"
        if words[0] in names:
            subs = sorted(" ".join(c.words) for c in COMMANDS if c.words[0] == words[0])
            hint = "; one of: " + ", ".join(subs)
        await self._terminal.write(f"unknown command: {' '.join(words)}{hint}\n")
        return EXIT_USAGE

    def _on_pending(self, pending: PendingApproval) -> None:
        text = (
            f"waiting for a second person: request {pending.id} "
            f"(another holder of {pending.permission.value} runs: approve {pending.id})\n"
        )
        task = asyncio.ensure_future(self._terminal.write(text))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _run(self, command: Command, args: list[str]) -> int:
        guard = self._runtime.guard
        assert command.permission is not None
        ctx = Context(self._runtime, self._session, self._terminal, args, None)
        if command.check is not None and command.permission in guard.permitted(
            self._session, command.resource
        ):
            try:
                command.check(ctx)
            except UsageError as e:
                await self._terminal.write(f"error: {e}\nusage: {command.usage}\n")
                return EXIT_USAGE
            except MeterdError as e:
                await self._terminal.write(f"error: {e}\n")
                return EXIT_DENIED
        decision = await guard.authorize(
            self._session,
            command.permission,
            command.resource,
            detail={"command": command.name},
            action=f"{command.name} by {self._session.principal}",
            on_pending=self._on_pending,
        )
        if not decision.allowed:
            why = decision.detail or (decision.reason.value if decision.reason else "refused")
            await self._terminal.write(f"denied: {command.permission.value} ({why})\n")
            return EXIT_DENIED
        ctx.decision = decision
        try:
            status = await command.handler(ctx)
        except UsageError as e:
            await self._terminal.write(f"error: {e}\nusage: {command.usage}\n")
            status = EXIT_USAGE
        except MeterdError as e:
            await self._terminal.write(f"error: {e}\n")
            status = EXIT_DENIED
        else:
            await decision.done()
            return status
        # The allow is already recorded; record that the action itself did not happen.
        await decision.failed({"command": command.name, "failed": True})
        return status
