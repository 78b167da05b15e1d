"""What verification reports: the first problem found, and the totals of what passed."""

from __future__ import annotations

import enum

from meterd.record import record


class Problem(enum.Enum):
    """What verification found wrong.  The value is the word tools print."""

    EDITED = "edited"
    REORDERED = "reordered"
    MISSING = "missing"
    DUPLICATED = "duplicated"
    TRUNCATED = "truncated"
    BAD_MAC = "bad MAC"


@record
class Finding:
    """The first problem found.

    Attributes:
        seq: The first bad sequence number.
        problem: What is wrong.
        message: One line for a human.
        location: ``file:offset`` where it was noticed, or empty.
    """

    seq: int
    problem: Problem
    message: str
    location: str = ""


@record
class VerifyReport:
    """The outcome of :func:`verify`.

    Attributes:
        records: Records checked.
        first_seq: Seq of the first record (0 if none).
        last_seq: Seq of the last record checked.
        mac_checked: True when MACs were checked with a key.
        checkpoints: Checkpoint records seen and consistent.
        anchored: True when an anchor was given and the log holds it (or starts
            right after it, linked to it).
        finding: The first problem, or None when the log is intact.
    """

    records: int
    first_seq: int
    last_seq: int
    mac_checked: bool
    checkpoints: int
    anchored: bool
    finding: Finding | None

    @property
    def ok(self) -> bool:
        """True when nothing was found wrong."""
        return self.finding is None
