"""Settings of one security log, validated when built."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FullPolicy(enum.Enum):
    """What the log does when the next write would exceed its capacity.

    Every drop is itself recorded (``log_segment_dropped``).
    """

    #: Drop the oldest segment only if every record in it was confirmed off the
    #: meter (the forwarder's cursor); otherwise refuse appends, which the guard
    #: turns into denials.  The default: nothing unexported is ever lost.
    DROP_EXPORTED = "drop_exported"
    #: Drop the oldest segment whether or not it was exported (keeps the meter
    #: operable at the price of evidence).
    DROP_OLDEST = "drop_oldest"
    #: Never drop; refuse appends once full.
    REFUSE = "refuse"


#: Fill levels (percent of capacity) at which a ``log_capacity`` record is written.
FILL_WARNINGS = (80, 90, 95, 98)


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Limits and policies of a security log.

    Attributes:
        segment_bytes: A segment is closed and the next one started before it
            would exceed this size; a group of records written together is
            never split, so a segment begun by a larger group holds it whole.
        capacity_bytes: Total size of all segments the log may occupy.
        full_policy: What happens at capacity.
        checkpoint_interval: A checkpoint record is written after this many records.
        append_timeout: Seconds an append waits for stable storage before
            :class:`~meterd.seclog.errors.LogUnavailableError`.
        max_pending: Records that may wait to become durable; beyond, appends fail at once.
        append_only_attr: Set the Linux append-only attribute on segments where permitted.

    Raises:
        ValueError: A limit is out of its bounds.
    """

    segment_bytes: int = 1 << 20
    capacity_bytes: int = 32 << 20
    full_policy: FullPolicy = FullPolicy.DROP_EXPORTED
    checkpoint_interval: int = 1000
    append_timeout: float = 5.0
    max_pending: int = 10_000
    append_only_attr: bool = True

    def __post_init__(self) -> None:
        if not 4096 <= self.segment_bytes <= 1 << 30:
            raise ValueError("segment_bytes must be between 4 KiB and 1 GiB")
        if self.capacity_bytes < 2 * self.segment_bytes:
            raise ValueError("capacity_bytes must hold at least two segments")
        if not 1 <= self.checkpoint_interval <= 1_000_000:
            raise ValueError("checkpoint_interval must be between 1 and 1000000")
        if not 0.01 <= self.append_timeout <= 600:
            raise ValueError("append_timeout must be between 0.01 and 600 seconds")
        if not 1 <= self.max_pending <= 1_000_000:
            raise ValueError("max_pending must be between 1 and 1000000")
