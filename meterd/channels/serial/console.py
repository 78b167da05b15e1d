"""The console's state machine: login prompt → password → meter shell → logout → login prompt.

Invariants:
    * Every failed login gets the same line, whether the name is unknown, the
      password wrong or the account locked; the line says that repeated
      failures lock the account, so a locked-out technician knows to wait.
    * A name that cannot be a user name (perhaps a password typed at the wrong
      prompt) is never written to the log: it is checked and recorded as
      :data:`INVALID_NAME`.
    * Every session ends with exactly one record: ``logout_manual`` on
      ``exit``, Ctrl-D, hang-up or shutdown (reason in the record), ``logout_timeout``
      when the shell's idle timeout fires.
"""

from __future__ import annotations

import asyncio
import logging
import re

from meterd.channels.serial.config import SerialConfig
from meterd.channels.serial.terminal import ConsoleTerminal
from meterd.errors import MeterdError
from meterd.guard import Password, Session
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.runtime import Runtime

log = logging.getLogger(__name__)

LOGIN_PROMPT = "login: "
PASSWORD_PROMPT = "Password: "  # noqa: S105 - the prompt, not a password
LOGIN_FAILED = "Login incorrect. Repeated failures lock the account for a while.\n"
#: What the log records instead of a typed name that is not a possible user name.
INVALID_NAME = "invalid-name"
_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
MAX_NAME = 32


class Console:
    """Runs the console on attached terminals, one at a time.

    Args:
        runtime: The daemon's guard and meter.
        config: Console settings (timeouts, delays).
        source: How the log names the line (the device path).
    """

    def __init__(self, runtime: Runtime, config: SerialConfig, source: str) -> None:
        self._runtime = runtime
        self._config = config
        self.source = source

    async def serve(self, terminal: ConsoleTerminal) -> None:
        """Offer logins on ``terminal`` until it hangs up."""
        try:
            status = self._runtime.meter.status()
            banner = f"{status.model} {status.serial_number} serial console"
        except MeterdError:
            banner = "meter serial console"
        await terminal.write(f"\n{banner}\n")
        while not terminal.hung_up:
            terminal.resume()
            session = await self._login(terminal)
            if session is not None:
                await self._shell(terminal, session)

    async def _prompt(self, terminal: ConsoleTerminal, prompt: str, *, echo: bool) -> str | None:
        try:
            return await asyncio.wait_for(
                terminal.read_line(prompt, echo=echo, max_line=None if not echo else MAX_NAME),
                self._config.login_timeout,
            )
        except TimeoutError:
            await terminal.write("\n")
            return None

    async def _login(self, terminal: ConsoleTerminal) -> Session | None:
        name = await self._prompt(terminal, LOGIN_PROMPT, echo=True)
        if not name:
            return None
        secret = await self._prompt(terminal, PASSWORD_PROMPT, echo=False)
        if secret is None:
            return None
        guard = self._runtime.guard
        principal = name if _NAME.fullmatch(name) else INVALID_NAME
        if not await guard.authenticate(Channel.SERIAL, self.source, principal, Password(secret)):
            await asyncio.sleep(self._config.failure_delay)
            await terminal.write(LOGIN_FAILED)
            return None
        opened = await guard.open_session(
            principal, Channel.SERIAL, self.source, (Permission.TERMINAL_ACCESS,)
        )
        if not isinstance(opened, Session):
            # The password was right, so saying why reveals nothing to a stranger.
            await terminal.write(f"Permission denied: {opened.detail or 'no terminal access'}\n")
            return None
        return opened

    async def _shell(self, terminal: ConsoleTerminal, session: Session) -> None:
        guard = self._runtime.guard
        # The guard ends sessions on its own (sweep, policy change): stop reading at once.
        ended: list[str] = []

        def on_close(reason: str) -> None:
            # Only a session ended under a waiting prompt needs telling; the shell reports its own timeout.
            if terminal.reading:
                ended.append(reason)
            terminal.interrupt()

        session.on_close.append(on_close)
        from meterd.shell import MeterShell  # noqa: PLC0415 - on first use (see meterd.shell)

        shell = MeterShell(self._runtime, session, terminal)
        reason = ""
        try:
            await shell.run()
        except asyncio.CancelledError:
            reason = "shutdown"
            raise
        finally:
            if not session.closed:
                reason = reason or (
                    "exit" if shell.exited else "hangup" if terminal.hung_up else "end of input"
                )
                await guard.close_session(session, reason=reason)
        if not terminal.hung_up:
            if ended:
                await terminal.write(f"\nsession closed: {ended[0]}\n")
            await terminal.write("logged out\n\n")
