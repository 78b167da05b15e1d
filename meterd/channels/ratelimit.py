"""One rate limiter for every channel that admits requests by rate: per key, a rate and a burst; no I/O.

The generic cell rate algorithm (GCRA): each key (a client address, a
connection) has a theoretical arrival time, the moment its budget would be
full again; a request conforms while that time is at most ``burst - 1``
intervals ahead of now.  It is a token bucket of ``burst`` tokens refilled at
``rate`` a second, kept as one float per key.

Two ways to spend it, one per kind of channel:
    * :meth:`RateLimiter.take` refuses a request beyond the budget and spends
      nothing (the front panel cuts such a client off);
    * :meth:`RateLimiter.delay` always reserves the next slot and says how long
      the request must wait for it (Modbus reads a flooding client's next
      request later, so it fills its own TCP window, not the meter's CPU).

Keys whose budget is full again are forgotten once there are more than
:data:`PRUNE_AT` of them (an idle key equals a fresh one), so many clients
cannot grow it without bound.
"""

from __future__ import annotations

#: Keys kept before those whose budget is full again are forgotten.
PRUNE_AT = 1024
#: Rounding the float arithmetic may add (far below any clock's step): a request this
#: close to its slot is in it.
_ROUNDING = 1e-9


class RateLimiter:
    """``rate`` requests a second per key on average, ``burst`` at once.

    Args:
        rate: Sustained requests per second per key (> 0).
        burst: Requests a key may make at once (>= 1; default: one second's worth).
    """

    __slots__ = ("_due", "_slack", "interval")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.interval = 1.0 / rate
        self._slack = ((rate if burst is None else burst) - 1) * self.interval + _ROUNDING
        self._due: dict[str, float] = {}

    def delay(self, key: str, now: float) -> float:
        """Reserve a slot for one request of ``key``; return how long it must wait first."""
        due = self._due.get(key, now)
        due = max(due, now)
        self._due[key] = due + self.interval
        if len(self._due) > PRUNE_AT:
            self._prune(now)
        wait = due - now - self._slack
        return wait if wait > 0.0 else 0.0

    def take(self, key: str, now: float) -> bool:
        """Spend a slot for one request of ``key`` if it has one now; False (nothing spent) if not."""
        due = max(self._due.get(key, now), now)
        if due - now > self._slack:
            return False
        self._due[key] = due + self.interval
        if len(self._due) > PRUNE_AT:
            self._prune(now)
        return True

    def _prune(self, now: float) -> None:
        self._due = {k: t for k, t in self._due.items() if t > now}
