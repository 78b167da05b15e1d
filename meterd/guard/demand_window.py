"""The peak-demand-reset lockout period as a stateful rule: check, commit, release.

A reset is reserved (committed) when it is allowed, before any wait (dual control, the
log record), so two concurrent resets cannot both pass.  A reservation is
released when the reset does not happen after all (refused by dual control,
the log could not record it, the meter rejected it), so a reset that never
took place does not block the next one for the whole period.

Invariant: at most one reservation is outstanding at a time while the period
is positive (a second reset is refused while the first is reserved).
"""

from __future__ import annotations

from meterd.record import record


@record
class Reservation:
    """A reset allowed but not yet known to have happened.

    Attributes:
        at: Wall time the reset was reserved.
        previous: The last reset before it (restored if this one is released).
    """

    at: float
    previous: float | None


class DemandResetWindow:
    """The shortest time between two peak-demand resets.

    Args:
        last_reset: Wall time of the last reset the meter knows of, if any.
    """

    def __init__(self, last_reset: float | None = None) -> None:
        self._last = last_reset

    @property
    def last_reset(self) -> float | None:
        """Wall time of the last reset, reserved ones included."""
        return self._last

    def check(self, now: float, period: float) -> str:
        """Return why a reset at ``now`` is refused, or an empty string if it may go ahead."""
        last = self._last
        if last is not None and 0 <= now - last < period:
            wait = int(period - (now - last)) + 1
            return f"peak demand was reset {int(now - last)} s ago; next reset allowed in {wait} s"
        return ""

    def commit(self, now: float) -> Reservation:
        """Count a reset at ``now`` against the period (after :meth:`check` allowed it)."""
        reservation = Reservation(now, self._last)
        self._last = now
        return reservation

    def release(self, reservation: Reservation) -> None:
        """Undo a reservation whose reset did not happen (a no-op if a later one replaced it)."""
        if self._last == reservation.at:
            self._last = reservation.previous
