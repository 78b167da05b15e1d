"""How much the log takes from unauthenticated parties: a budget per source, then counts.

Refusals of parties that have not authenticated (anonymous Modbus, failed
logins, panel messages without a session, probes) are recorded one by one up
to ``unauthenticated_records`` per source and ``unauthenticated_records_total``
over all sources in each ``unauthenticated_interval``.  A source is a party:
``address:port`` counts under its address, since a client gets a new port
with every connection and must not get a new budget with it.  Beyond that
they are counted per (source, channel, event, reason) and, once per interval
(and at shutdown), :meth:`EvidenceBudget.drain` hands the counts to the sweep,
which writes one summary record per key.  Nothing is lost from the count while
a flood writes a bounded number of records per interval.  The table of counts
is bounded too: past :data:`MAX_KEYS` keys, new sources are counted under
the source ``*``.

No I/O here, and no knowledge of the log: the event a key stands for is any
enum (the audit step's :class:`~meterd.seclog.EventType`).  The audit step
asks, writes, and gives back what it could not write.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from enum import Enum
from typing import Generic, TypeVar

from meterd.policy.request import Channel
from meterd.record import record

E = TypeVar("E", bound=Enum)

#: Distinct keys counted between two sweeps; more are folded into the source ``*``.
MAX_KEYS = 1024
#: Sources tracked within one interval; a flood from more is counted, not recorded one by one.
MAX_SOURCES = 4096
OTHER_SOURCES = "*"


def party(source: str) -> str:
    """The party behind a request's source: an ``address:port`` source without its port.

    A panel source ``uid=U pid=P`` is the user ``uid=U``: a local client that forks
    gets no new budget either.
    """
    if source.startswith("uid="):
        return source.partition(" ")[0]
    address, colon, port = source.rpartition(":")
    if colon and port.isdigit():
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return source
        return address
    return source


@record
class SummaryKey(Generic[E]):
    """What one summary record stands for."""

    source: str
    channel: Channel
    event: E
    reason: str


@dataclass(slots=True)
class Tally:
    """Refusals counted under one key.

    Attributes:
        count: How many.
        first: Wall time of the first.
        last: Wall time of the last.
    """

    count: int
    first: float
    last: float


class EvidenceBudget(Generic[E]):
    """The per-source and overall budgets of individually recorded unauthenticated refusals.

    Args:
        per_source: Records per source and interval.
        total: Records over all sources and interval.
        interval: Seconds after which both budgets refill.
    """

    def __init__(self, per_source: int, total: int, interval: float) -> None:
        self._per_source = per_source
        self._total = total
        self._interval = interval
        self._window = float("-inf")
        self._used: dict[str, int] = {}
        self._used_total = 0
        self._counts: dict[SummaryKey[E], Tally] = {}
        self._summarised = float("-inf")

    def admit(self, source: str, now: float) -> bool:
        """Take one individual record from ``source``'s budget; False once it is spent."""
        if now - self._window >= self._interval:
            self._window = now
            self._used.clear()
            self._used_total = 0
        source = party(source)
        used = self._used.get(source)
        if used is None and len(self._used) >= MAX_SOURCES:
            return False
        used = used or 0
        if used >= self._per_source or self._used_total >= self._total:
            return False
        self._used[source] = used + 1
        self._used_total += 1
        return True

    def count(self, key: SummaryKey[E], wall: float) -> None:
        """Count one refusal under ``key`` (its source taken as the party) for the next summary."""
        self._add(replace(key, source=party(key.source)), Tally(1, wall, wall))

    def _add(self, key: SummaryKey[E], tally: Tally) -> None:
        held = self._counts.get(key)
        if held is None and len(self._counts) >= MAX_KEYS:
            key = SummaryKey(OTHER_SOURCES, key.channel, key.event, key.reason)
            held = self._counts.get(key)
        if held is None:
            self._counts[key] = Tally(tally.count, tally.first, tally.last)
        else:
            held.count += tally.count
            held.first = min(held.first, tally.first)
            held.last = max(held.last, tally.last)

    def due(self, now: float) -> bool:
        """Whether summaries are due: once per interval, so a flood writes a bounded number of them."""
        if self._counts and now - self._summarised >= self._interval:
            self._summarised = now
            return True
        return False

    def drain(self) -> list[tuple[SummaryKey[E], Tally]]:
        """Return and forget every count, in a stable order."""
        counts, self._counts = self._counts, {}
        return sorted(counts.items(), key=lambda kv: (kv[0].source, kv[0].channel.value, kv[0].event.value))

    def give_back(self, key: SummaryKey[E], tally: Tally) -> None:
        """Keep a count whose summary could not be written, for the next sweep."""
        self._add(key, tally)

    @property
    def pending(self) -> int:
        """Refusals counted and not yet written as summaries."""
        return sum(t.count for t in self._counts.values())
