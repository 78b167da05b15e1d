"""The directory as the guard uses it: the backend in a bounded worker pool, the users in force.

Invariants:
    * The directory runs in a bounded pool of worker threads; the event loop
      only awaits it, never longer than the login timeout (plus a short grace).
    * Every attempt that learns whether the directory answers (a login, a
      probe) records that verdict with its time; a break-glass login trusts
      an *unreachable* verdict only while it is younger than
      ``reachability_max_age``, and asks the directory otherwise.  A verdict
      of *reachable* is never trusted: the directory is asked again, which is
      quick while it answers, so a directory that just failed never keeps
      break-glass out.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from meterd.directory.backend import (
    DirectoryBackend,
    DirectoryIdentity,
    DirectoryRefused,
    DirectoryUnreachable,
)
from meterd.directory.offline import OfflineCache
from meterd.directory.settings import DirectorySettings
from meterd.policy.model import DirectoryPrincipal
from meterd.policy.request import Channel
from meterd.workers import worker_pool

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Extra seconds the loop waits past the login timeout for a worker that overran it.
GRACE = 0.5
#: Seconds a principal stays in force after its login with no session yet (the channel
#: opens its session right after authentication; a sweep in between must not drop it).
SESSIONLESS_GRACE = 120.0


class DirectoryGate:
    """The directory as the guard uses it: backend, worker pool, offline cache, users in force.

    Args:
        settings: ``[directory]``.
        backend: The LDAP or RADIUS backend.
        offline: The offline cache, or None when ``offline_ttl`` is 0.
        wall: Wall clock (offline entries outlive restarts).
        monotonic: Clock of the login deadlines and of the reachability verdict.
    """

    def __init__(
        self,
        settings: DirectorySettings,
        backend: DirectoryBackend,
        *,
        offline: OfflineCache | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.offline = offline
        self._wall = wall
        self._monotonic = monotonic
        self._pool = worker_pool(settings.workers, "meterd-directory")
        self._principals: dict[str, DirectoryPrincipal] = {}
        #: Where each directory principal in force logged in: (path, server).
        self.origin: dict[str, tuple[str, str]] = {}
        self._put_at: dict[str, float] = {}
        #: The last attempt's verdict (None until the directory was first asked) and its time.
        self.reachable: bool | None = None
        self._verdict_at = 0.0

    @property
    def principals(self) -> Mapping[str, DirectoryPrincipal]:
        """The directory users in force, by name."""
        return self._principals

    def put(self, principal: DirectoryPrincipal, server: str, now: float) -> None:
        """Put a freshly mapped principal in force at monotonic ``now`` (replacing an earlier login's)."""
        self._principals[principal.name] = principal
        self.origin[principal.name] = (principal.path, server)
        self._put_at[principal.name] = now

    def prune(self, keep: set[str], now: float) -> bool:
        """Drop principals with no session (not in ``keep``) whose login is older than the grace.

        Returns:
            True if any principal went (the table must be recompiled).
        """
        gone = [
            name
            for name in self._principals
            if name not in keep and now - self._put_at.get(name, now) > SESSIONLESS_GRACE
        ]
        for name in gone:
            del self._principals[name]
            self.origin.pop(name, None)
            self._put_at.pop(name, None)
        return bool(gone)

    def wall(self) -> float:
        """The wall clock offline entries are dated with."""
        return self._wall()

    def applies(self, channel: Channel) -> bool:
        """Whether password logins on ``channel`` may use the directory."""
        return channel in self.settings.channels

    async def run(self, func: Callable[..., T], *args: object) -> T:
        """Run blocking ``func`` in the directory's worker pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    async def ask(self, user: str, password: str) -> DirectoryIdentity:
        """Authenticate with the backend in a worker; never takes longer than the login timeout.

        Raises:
            DirectoryRefused: The directory said no (or failed unexpectedly: fail closed).
            DirectoryUnreachable: No server answered in time.
        """
        budget = self.settings.login_timeout
        # The backends take a time.monotonic() deadline whatever clock the verdict uses.
        deadline = time.monotonic() + budget
        try:
            identity = await asyncio.wait_for(
                self.run(self.backend.authenticate, user, password, deadline), budget + GRACE
            )
        except TimeoutError as e:
            # Every worker busy (or one overran): the login ends; the worker finishes on its own.
            self._learn(reachable=False)
            raise DirectoryUnreachable(
                f"{self.backend.name}: no answer within {budget:g} s", step="timeout"
            ) from e
        except DirectoryUnreachable:
            self._learn(reachable=False)
            raise
        except DirectoryRefused as e:
            if e.step != "internal":
                self._learn(reachable=True)
            raise
        except Exception as e:  # a bug in a backend refuses; it never falls back to offline logins
            log.exception("directory backend failed")
            raise DirectoryRefused(f"{self.backend.name}: internal error: {e}", step="internal") from e
        self._learn(reachable=True)
        return identity

    def _learn(self, *, reachable: bool) -> None:
        self.reachable = reachable
        self._verdict_at = self._monotonic()

    async def reachable_now(self) -> bool:
        """Whether the directory answers now, for a break-glass login (see the module's invariants).

        A recent *unreachable* verdict answers at once, so break-glass logins do not each
        wait out a login timeout while the directory is down; anything else asks it.
        """
        age = self._monotonic() - self._verdict_at
        if self.reachable is False and age <= self.settings.reachability_max_age:
            return False
        return await self.probe()

    async def probe(self) -> bool:
        """Ask the directory something it must answer, to learn whether it is reachable now."""
        try:
            await self.ask("meterd-probe-" + secrets.token_hex(4), secrets.token_urlsafe(24))
        except DirectoryUnreachable:
            return False
        except DirectoryRefused:
            return True
        return True

    def close(self) -> None:
        """Stop the workers (a login under way ends at its deadline)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
