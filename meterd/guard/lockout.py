"""Failed-login counting and account lockout, per user and per channel.

Counting per channel means a flood of guesses on the network cannot lock a
technician out of the serial console at the meter.  Unknown names are counted
exactly like known ones, so lockout behaviour does not reveal which exist.
As a stateful rule: :meth:`LoginLockout.check` (locked now?),
:meth:`LoginLockout.commit` (count a failure, lock at the threshold),
:meth:`LoginLockout.release` (a success clears the count).
The table is bounded: beyond :data:`MAX_TRACKED` entries the oldest are
forgotten (a guesser rotating names gains nothing, each name still locks).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from meterd.policy.request import Channel

MAX_TRACKED = 4096


@dataclass(slots=True)
class _Counter:
    failures: int = 0
    locked_until: float = 0.0


class LoginLockout:
    """Counts consecutive failures and locks a (user, channel) pair."""

    def __init__(self) -> None:
        self._counters: OrderedDict[tuple[str, Channel], _Counter] = OrderedDict()

    def check(self, user: str, channel: Channel, now: float) -> bool:
        """True while ``user`` is locked out on ``channel``."""
        counter = self._counters.get((user, channel))
        return counter is not None and counter.locked_until > now

    def commit(self, user: str, channel: Channel, now: float, threshold: int, duration: float) -> bool:
        """Record a failure; return True if it locked the account just now."""
        key = (user, channel)
        counter = self._counters.pop(key, None) or _Counter()
        self._counters[key] = counter
        while len(self._counters) > MAX_TRACKED:
            self._counters.popitem(last=False)
        if counter.locked_until > now:
            return False
        counter.failures += 1
        if counter.failures >= threshold:
            counter.failures = 0
            counter.locked_until = now + duration
            return True
        return False

    def release(self, user: str, channel: Channel) -> None:
        """Reset the count after a successful login."""
        self._counters.pop((user, channel), None)

    # The names the credential check (Guard.authenticate) uses.
    locked = check
    failure = commit
    success = release

    def unlock(self, user: str) -> bool:
        """Clear every lock and count of ``user`` on all channels; return True if any was set."""
        keys = [k for k in self._counters if k[0] == user]
        for key in keys:
            del self._counters[key]
        return bool(keys)
