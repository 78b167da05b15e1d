"""The permit: what :meth:`meterd.guard.Guard.authorize` answers, and what the channel owes back.

A permit is the recorded decision plus its completion.  The channel runs the
action only if ``permit.allowed`` and then completes the permit once:
:meth:`Permit.done` when the action happened, :meth:`Permit.failed` when the
meter refused or broke it.  Failing gives back what the allow reserved in the
stateful rules (the demand-reset lockout period) and records, with outcome
``error``, that nothing changed.

Invariants:
    * A permit is a :class:`~meterd.policy.request.Decision` (every consumer of
      an allow, such as the log's reader or :meth:`~meterd.guard.Guard.reauthorize`,
      takes it as one).
    * Only an allow has anything to complete: a refusal's ``done`` and ``failed``
      do nothing.  The first completion counts; later ones do nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from meterd.guard.audit import Detail, EventType
from meterd.policy.request import Decision

#: Records an allowed action's failure: (the allow, the event to record it as, its detail).
FailureRecorder = Callable[[Decision, EventType | None, Detail], Awaitable[object]]


class Completion:
    """What completing one allow involves: the reservation to give back and how a failure is recorded.

    Args:
        record_failure: Writes the failure record.
        release: Gives back what the allow reserved (None: nothing was).
    """

    __slots__ = ("_record_failure", "_release", "completed")

    def __init__(self, record_failure: FailureRecorder, release: Callable[[], None] | None = None) -> None:
        self._record_failure = record_failure
        self._release = release
        #: True once done or failed was called.
        self.completed = False

    def done(self) -> None:
        """The action happened: what it reserved stays spent."""
        self.completed = True

    async def failed(self, allowed: Decision, event: EventType | None, detail: Detail) -> None:
        """The action did not happen: give back its reservation, then record the failure."""
        self.completed = True
        if self._release is not None:
            release, self._release = self._release, None
            release()
        await self._record_failure(allowed, event, detail)


@dataclass(frozen=True, slots=True, eq=False)
class Permit(Decision):
    """A decision of :meth:`~meterd.guard.Guard.authorize` that the channel completes once.

    Attributes:
        completion: What completing it does (None for a refusal: nothing to complete).
    """

    completion: Completion | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, decision: Decision, completion: Completion | None) -> Permit:
        """The permit for ``decision``; a refusal gets no completion."""
        return cls(
            decision.request,
            decision.outcome,
            decision.reason,
            decision.detail,
            completion if decision.allowed else None,
        )

    async def done(self) -> None:
        """Complete an allowed action that happened."""
        if self.completion is not None and not self.completion.completed:
            self.completion.done()

    async def failed(self, detail: Detail, *, event: EventType | None = None) -> None:
        """Complete an allowed action that failed in the meter.

        Args:
            detail: Why, small and secret-free (the meter's error).
            event: What the failure is recorded as (default: the event an
                allow of the permission is recorded as).
        """
        if self.completion is not None and not self.completion.completed:
            await self.completion.failed(self, event, detail)
