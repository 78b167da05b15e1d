"""The guard: decides, applies the stateful rules, records, counts.

Invariants:
    * Every call that decides returns a :class:`Decision` (:meth:`Guard.authorize`
      a :class:`~meterd.guard.permit.Permit`, which is one); it never raises for
      a refusal, and any unexpected error while deciding is a refusal
      (``Outcome.ERROR``), recorded where the log allows.
    * Nothing is allowed unless its record is durable in the security log
      (except aggregated allows, whose count is recorded by :meth:`Guard.sweep`).
    * The policy in force is swapped in one step (:meth:`Guard.install_policy`);
      each request uses the policy current when it is decided, so revoking a
      role or disabling a user takes effect at the next request of an open session.

The roles live in their own modules (see :mod:`meterd.guard.core`); this one
joins them into the façade and runs the periodic sweep.
"""

from __future__ import annotations

import asyncio

from meterd.guard.audit import ALLOW_EVENTS, LogStatus
from meterd.guard.authorize import Authorization
from meterd.guard.log_verbs import LogVerbs
from meterd.guard.view import View

__all__ = ["ALLOW_EVENTS", "Guard", "LogStatus"]


class Guard(Authorization, View, LogVerbs):
    """The single decision point: the façade channels, the shell and the daemon use.

    Its verbs: :meth:`authenticate`, :meth:`open_session` / :meth:`close_session`,
    :meth:`authorize` (a permit the channel completes) and :meth:`reauthorize`,
    :meth:`refuse` for refusals made before any decision, :meth:`approve`,
    :meth:`sweep`, the read-only view (:meth:`permitted`, :meth:`approvable`,
    :meth:`log_status`) and the log's verbs (see :mod:`meterd.guard.log_verbs`).
    Construct it with the arguments of :class:`~meterd.guard.core.GuardCore`.
    """

    async def sweep(self, *, final: bool = False) -> None:
        """Close idle sessions, record the aggregated allows and the summaries of counted refusals.

        Call every few seconds, and with ``final`` at shutdown (summaries are
        otherwise written once per ``unauthenticated_interval``).  What the log
        cannot take now is kept for the next sweep.  A sweep runs to its end even
        if its caller is cancelled (counts taken out for writing are never
        dropped half-way), and the next one waits for it.
        """
        running = self._sweep_task
        if running is not None and not running.done():
            await asyncio.shield(running)
        task = asyncio.ensure_future(self._sweep(final=final))
        self._sweep_task = task
        await asyncio.shield(task)

    async def _sweep(self, *, final: bool) -> None:
        now = self._monotonic()
        idle = self._compiled.policy.settings.session_idle_timeout
        for session in self.sessions:
            if now - session.last_active > idle:
                await self.close_session(session, timed_out=True)
            elif session.expires_at is not None and now >= session.expires_at:
                await self.close_session(session, timed_out=True, reason="session lifetime reached")
        if self.directory is not None and self.directory.prune({s.principal for s in self.sessions}, now):
            self._compiled = self._with_directory(self._base)
        await self._audit.flush(self._compiled, final=final)
