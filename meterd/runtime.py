"""The runtime contract channels and the shell share: what the daemon hands them, what it expects back.

It sits below both (the shell runs inside several channels, and no channel imports another),
and above the guard and the meter it hands out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from meterd.guard import Guard, Session
from meterd.meter.interface import Meter
from meterd.policy.credentials import Credentials
from meterd.policy.model import Policy
from meterd.record import record


class PolicyCommands(Protocol):
    """The daemon's policy service, as channels see it (push, rollback, shell edits)."""

    async def run(
        self, guard: Guard, session: Session, argv: Sequence[str], payload: bytes
    ) -> tuple[int, str]:
        """Run a ``meterd-policy`` command line for ``session``; return (exit status, output)."""

    async def edit(self, guard: Guard, session: Session, policy: Policy, how: str) -> tuple[int, str]:
        """Put an edited policy (from the meter shell) in force; return (exit status, output)."""

    async def set_credentials(
        self, guard: Guard, session: Session, credentials: Credentials, how: str
    ) -> tuple[int, str]:
        """Store changed local credentials (from the meter shell) and put them in force."""


@record
class Runtime:
    """The daemon's shared parts, handed to each channel at start.

    Attributes:
        guard: The single decision point; every request goes through it.
        meter: The meter the actions act upon (only after an allow).
        state_dir: The daemon's state directory (host keys, sockets, pty links live below it).
        policies: The policy service (``meterd-policy`` commands and shell edits), if any.
    """

    guard: Guard
    meter: Meter
    state_dir: Path
    policies: PolicyCommands | None = None


class Listener(Protocol):
    """A channel as the daemon's supervisor runs it."""

    name: str

    async def start(self) -> None:
        """Bind and start accepting; raise :class:`~meterd.errors.ChannelError` if it cannot.

        Called before the daemon reports READY; nothing may be listening
        if any channel fails to start.
        """

    async def stop(self) -> None:
        """Stop accepting, tell open sessions, and return within a few seconds."""
