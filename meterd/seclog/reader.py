"""Reading records back: from a log directory or from an exported file, with filters.

Sources: a log directory (its segments, oldest first) or one file holding
frames, either plain (a copied segment) or embedded in RFC 5424 lines (what
``meterctl log export`` writes and what a collector stores).  Lines that carry
no frame (other syslog traffic) are skipped in exported files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from meterd.policy.request import Outcome
from meterd.record import record
from meterd.seclog.codec import Frame, FrameError, decode_frame, find_frame
from meterd.seclog.events import EventType, Record
from meterd.seclog.segments import Line, list_segments, read_lines


def iter_lines(source: Path) -> Iterator[Line]:
    """Yield every stored line of a log directory or the frame lines of one file.

    For a file that is not a bare segment, each line is reduced to its
    embedded frame and lines without one are skipped.
    """
    if source.is_dir():
        for _, path in list_segments(source):
            yield from read_lines(path)
        return
    for line in read_lines(source):
        frame = line.data if line.data[:1] != b"<" else find_frame(line.data)
        if frame is None:
            continue
        if frame is not line.data:
            frame = frame + b"\n" if line.complete else frame
        yield Line(frame, line.offset, line.path)


def iter_frames(source: Path) -> Iterator[Frame]:
    """Yield the decodable frames of ``source``, skipping damaged lines (use verify to find them)."""
    for line in iter_lines(source):
        if not line.complete:
            continue
        try:
            yield decode_frame(line.data)
        except FrameError:
            continue


def utc_text(moment: datetime) -> str:
    """Return ``moment`` in the log's timestamp format (naive values are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@record
class Query:
    """Which records to return; every given criterion must match.

    Attributes:
        since: Earliest record time, inclusive.
        until: Latest record time, exclusive.
        principals: Principal names to keep (empty: any).
        events: Event types to keep (empty: any).
        outcomes: Outcomes to keep (empty: any).
        limit: Keep at most this many (the newest); 0 for no limit.
    """

    since: datetime | None = None
    until: datetime | None = None
    principals: frozenset[str] = frozenset()
    events: frozenset[EventType] = frozenset()
    outcomes: frozenset[Outcome] = frozenset()
    limit: int = 0

    def filter(self, records: Iterable[Record]) -> list[Record]:
        """Return the matching records, oldest first."""
        since = utc_text(self.since) if self.since else ""
        until = utc_text(self.until) if self.until else ""
        kept = [
            r
            for r in records
            if (not since or r.time >= since)
            and (not until or r.time < until)
            and (not self.principals or r.principal in self.principals)
            and (not self.events or r.event in self.events)
            and (not self.outcomes or r.outcome in self.outcomes)
        ]
        return kept[-self.limit :] if self.limit else kept

    def describe(self) -> dict[str, str | int]:
        """Return the criteria as record detail (what an auditor asked for)."""
        out: dict[str, str | int] = {}
        if self.since:
            out["since"] = utc_text(self.since)
        if self.until:
            out["until"] = utc_text(self.until)
        if self.principals:
            out["principals"] = ",".join(sorted(self.principals))[:200]
        if self.events:
            out["events"] = ",".join(sorted(e.value for e in self.events))[:200]
        if self.outcomes:
            out["outcomes"] = ",".join(sorted(o.value for o in self.outcomes))
        if self.limit:
            out["limit"] = self.limit
        return out


def read_records(source: Path, query: Query | None = None) -> list[Record]:
    """Return the records of ``source`` matching ``query``.

    This reads files directly and so is for tools working on a copy (or on a
    live log with file-system access to it); the daemon reads only through
    :meth:`meterd.seclog.SecurityLog.read`, which checks the permission.
    """
    records = (frame.record for frame in iter_frames(source))
    return (query or Query()).filter(records)
