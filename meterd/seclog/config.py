"""Settings of one security log, validated when built."""

from __future__ import annotations

import enum

from meterd.record import record


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


#: Fill levels (percent of capacity) at which a ``log_capacity`` warning is written, as the
#: non-volatile FIFO logs of IEEE 1686 devices warn.
FILL_WARNINGS = (80, 85, 90, 95, 98)


@record
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
        fill_warnings: Fill levels (percent, rising) at which a ``log_capacity``
            record is written and the fill level metric and ``show status`` warn.
        unauthenticated_share: Percent of the capacity that records about
            unauthenticated parties (anonymous and unknown principals, failed
            logins) may hold at most; the rest is kept for authenticated work.
            Such records never make the log drop a segment or refuse an append.
        unauthenticated_records: Refusals of unauthenticated parties recorded one by
            one per source and ``unauthenticated_interval``; beyond, they are counted
            and written as one summary record per source, channel and reason.
        unauthenticated_records_total: The same bound over all sources together.
        unauthenticated_interval: Seconds over which those budgets refill.

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
    fill_warnings: tuple[int, ...] = FILL_WARNINGS
    unauthenticated_share: int = 10
    unauthenticated_records: int = 20
    unauthenticated_records_total: int = 200
    unauthenticated_interval: float = 60.0

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
        warnings = self.fill_warnings
        if any(not 1 <= w <= 100 for w in warnings) or list(warnings) != sorted(set(warnings)):
            raise ValueError("fill_warnings must be rising percentages between 1 and 100")
        if not 1 <= self.unauthenticated_share <= 50:
            raise ValueError("unauthenticated_share must be between 1 and 50 percent")
        if not 1 <= self.unauthenticated_records <= self.unauthenticated_records_total <= 100_000:
            raise ValueError(
                "unauthenticated_records must be between 1 and unauthenticated_records_total (at most 100000)"
            )
        if not 1 <= self.unauthenticated_interval <= 86_400:
            raise ValueError("unauthenticated_interval must be between 1 and 86400 seconds")
