"""The security log as the daemon uses it: append (blocking or async), read, checkpoint.

Forward-secure sealing: the key evolves on **every record**.  Why per record
rather than per epoch: an epoch key lets whoever seizes the meter re-seal the
whole current epoch, and closing epochs early is exactly the truncation
weakness of journald's sealing.  Per record, the seized key only seals records
that do not exist yet.  The cost is one SHA-256 per record in memory (about a
microsecond) and one key-file sync per *group commit*, not per record, so the
hot path stays fast.  The auditor keeps the initial key printed by
``meterctl log init`` and recomputes every later key.

Checkpoints: a ``log_checkpoint`` record (head seq and digest, sealed like
any record) is written every ``checkpoint_interval`` records, on
:meth:`SecurityLog.checkpoint` (the meter shell's ``log checkpoint``) and on
close, so a cleanly stopped daemon's log ends on one.  A copy that left the
meter (forwarded or exported) anchors verification whether or not it ends on
a checkpoint: the live log must hold every record the copy holds
(``meterctl log verify --from-checkpoint``; see :mod:`meterd.seclog.verify`).

Reading is gated: :meth:`SecurityLog.read` takes the permission core's
:class:`~meterd.policy.request.Decision` and returns records only if it allows
``security_logs_access``.  Every call is recorded as ``audit_log_access``,
refused calls too (outcome ``deny``), because a refused attempt to read the
audit trail is itself security-relevant; if that record cannot be written the
read fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Protocol, Unpack

from meterd.errors import SecurityLogError
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, Outcome
from meterd.seclog.config import LogConfig
from meterd.seclog.entry import (
    Entry,
    RecordFields,
    encode_decision,
    encode_record,
    make_entry,
    system_entry,
)
from meterd.seclog.errors import LogAccessError
from meterd.seclog.events import DetailValue, EventType, PrincipalKind, Record
from meterd.seclog.reader import Query, iter_lines, read_records
from meterd.seclog.segments import ACKNOWLEDGED_FILE, read_exported, write_exported
from meterd.seclog.store import SegmentStore
from meterd.seclog.writer import GroupCommitWriter

#: Bytes kept free beyond 2% of capacity before an unauthenticated record is written (appends in flight).
UNAUTHENTICATED_HEADROOM = 8192


class LogHealth(Protocol):
    """The log's failure flag, for a check made per request."""

    #: True once a write or sync has failed; set by the log, never cleared.
    failed: bool


class SecurityLog:
    """An open, writable security log.  Thread-safe; usable from asyncio.

    Use :meth:`init` once to create a log and :meth:`open` to open it.

    Args:
        store: An open store (use :meth:`open`).
    """

    def __init__(self, store: SegmentStore) -> None:
        self._store = store
        self.config = store.config
        self.directory = store.directory
        self._writer = GroupCommitWriter(store, store.config.max_pending)
        #: Its ``failed`` flag says whether a write or sync has failed, as the writer
        #: (or its event loop, woken by the failed sync) has learnt; :attr:`failed`
        #: asks the native syncer too.
        self.health: LogHealth = self._writer
        recovery = store.recovery
        if recovery.cut_bytes:
            self._writer.append(
                system_entry(
                    EventType.LOG_RECOVERED,
                    {
                        "segment": recovery.segment,
                        "offset": recovery.offset,
                        "cut_bytes": recovery.cut_bytes,
                    },
                    Outcome.ERROR,
                ),
                self.config.append_timeout,
            )

    @classmethod
    def init(cls, directory: Path, config: LogConfig | None = None) -> bytes:
        """Create a new log in ``directory`` (0700) and return its initial sealing key.

        The caller hands the key to the auditor and must not keep it: it
        verifies every record ever written.

        Raises:
            FileExistsError: A log already exists there.
            SecurityLogError: The first record could not be written.
        """
        initial = SegmentStore.create(directory)
        with cls.open(directory, config) as log:
            log._writer.append(system_entry(EventType.LOG_INIT, {"format": 1}), log.config.append_timeout)
        return initial

    @classmethod
    def open(cls, directory: Path, config: LogConfig | None = None) -> SecurityLog:
        """Open an existing log, recovering from a crash if needed.

        A torn last record is cut and a ``log_recovered`` record says so.

        Raises:
            LogCorruptError: Damage other than a torn last record.
            LogKeyError: The key file is missing, damaged or does not match.
        """
        return cls(SegmentStore(directory, config or LogConfig()))

    # -- appending --------------------------------------------------------

    def append(
        self, event: EventType, *, timeout: float | None = None, **fields: Unpack[RecordFields]
    ) -> int:
        """Append one record and return its seq once it is on stable storage.

        Blocking and thread-safe; concurrent callers share one sync.

        Raises:
            RecordRejectedError: A field is invalid or detail looks secret.
            LogUnavailableError: Not durable (closed, failed, full, overloaded, timed out).
        """
        return self.append_entry(make_entry(event, **fields), timeout)

    async def append_async(
        self,
        event: EventType,
        *,
        principal: str,
        outcome: Outcome,
        channel: Channel = Channel.LOCAL,
        source: str = "",
        permission: Permission | None = None,
        resource: str = "",
        detail: Mapping[str, DetailValue] | None = None,
        principal_kind: PrincipalKind | None = None,
        timeout: float | None = None,
        reserve: bool = False,
    ) -> int:
        """Like :meth:`append`, but awaits durability without blocking the event loop.

        The fields are spelled out rather than taken as ``**fields`` like
        :meth:`append`'s, and passed on by position: on this, the daemon's
        path, forwarding them by keyword costs a good part of encoding the record.
        ``reserve`` lets the record use the room a full log keeps for its own
        records: the guard grants it to an auditor's work on the log itself.
        """
        record = encode_record(
            event, principal, outcome, channel, source, permission, resource, detail, principal_kind
        )
        return await self._writer.submit(record, timeout or self.config.append_timeout, reserve)

    async def append_decision_async(
        self,
        decision: Decision,
        *,
        event: EventType | None = None,
        detail: Mapping[str, DetailValue] | None = None,
        principal_kind: PrincipalKind | None = None,
        timeout: float | None = None,
        reserve: bool = False,
    ) -> int:
        """Record a guard decision and return its seq once durable: the guard's hot path.

        Awaits without blocking the loop.  The event defaults to
        ``permission_denied`` for a refusal and ``access_decision`` for an
        allow; a deny reason goes into ``detail.reason``.

        Raises:
            RecordRejectedError: A field is invalid or detail looks secret.
            LogUnavailableError: Not durable; the guard must then deny.
        """
        record = encode_decision(decision, event, detail, principal_kind)
        return await self._writer.submit(record, timeout or self.config.append_timeout, reserve)

    def append_entry(self, entry: Entry, timeout: float | None = None, *, reserve: bool = False) -> int:
        """Append a prepared entry (blocking); return its seq (``reserve``: see :meth:`append_async`)."""
        return self._writer.append(entry, timeout or self.config.append_timeout, reserve=reserve)

    def on_commit(self, callback: Callable[[float], None] | None) -> None:
        """Have ``callback`` receive each sync's duration in seconds (for the flush metric).

        It runs in the thread or event loop of an appender woken by a sync,
        so it must be cheap, thread-safe and must not raise.
        """
        self._writer.on_commit = callback

    def checkpoint(self) -> int:
        """Write a checkpoint record of the head now and return its seq once it is durable.

        Blocking and thread-safe (from asyncio, run it in a thread).  Besides
        these, one is written every ``checkpoint_interval`` records and on
        :meth:`close`.

        Raises:
            LogUnavailableError: Closed, failed, full, or not durable in time.
        """
        return self._writer.request_checkpoint(self.config.append_timeout)

    # -- reading ----------------------------------------------------------

    def read(self, decision: Decision, query: Query | None = None) -> list[Record]:
        """Return records matching ``query`` if ``decision`` allows reading the log.

        The access is recorded (``audit_log_access``) and durable before any
        record is returned.

        Raises:
            LogAccessError: The decision is not an allow of ``security_logs_access``
                (the refusal is recorded).
            LogUnavailableError: The access could not be recorded.
        """
        query = query or Query()
        self._admit(decision, dict(query.describe()))
        return read_records(self.directory, query)

    def read_frames(self, decision: Decision) -> bytes:
        """Return every complete stored record line, byte for byte, if ``decision`` allows it.

        This is a copy that ``meterctl log verify`` checks like the log itself (chain,
        MACs, checkpoints), up to the head when it is read; at most the log's capacity.
        Gated and recorded exactly like :meth:`read`.

        Raises:
            LogAccessError: The decision is not an allow of ``security_logs_access``
                (the refusal is recorded).
            LogUnavailableError: The access could not be recorded.
        """
        self._admit(decision, {"view": "frames"})
        return b"".join(line.data for line in iter_lines(self.directory) if line.complete)

    def _admit(self, decision: Decision, detail: dict[str, DetailValue]) -> None:
        """Record a read of the log and refuse it unless ``decision`` allows it."""
        request = decision.request
        permitted = decision.allowed and request.permission is Permission.SECURITY_LOGS_ACCESS
        if not permitted:
            detail["refused"] = "decision does not allow security_logs_access"
        entry = make_entry(
            EventType.AUDIT_LOG_ACCESS,
            principal=request.principal,
            outcome=Outcome.ALLOW if permitted else Outcome.DENY,
            channel=request.channel,
            source=request.source,
            permission=request.permission,
            resource=request.resource,
            detail=detail,
        )
        if not permitted:
            with contextlib.suppress(SecurityLogError):  # refused either way; recorded if possible
                self.append_entry(entry)
            raise LogAccessError(
                f"{request.principal} may not read the security log", principal=request.principal
            )
        # An allowed read may use a full log's reserve: the auditor must be able to fetch it.
        self.append_entry(entry, reserve=True)

    # -- state ------------------------------------------------------------

    @property
    def head_seq(self) -> int:
        """Seq of the last durable record."""
        return self._store.durable

    @property
    def usage_bytes(self) -> int:
        """Bytes used by all segments."""
        return self._store.usage

    @property
    def fill_ratio(self) -> float:
        """Used fraction of the configured capacity (for the fill metric)."""
        return self._store.usage / self.config.capacity_bytes

    @property
    def warning_level(self) -> int:
        """The highest configured fill warning (percent) the log has reached; 0 below the first."""
        percent = self._store.usage * 100 // self.config.capacity_bytes
        return max((w for w in self.config.fill_warnings if percent >= w), default=0)

    @property
    def full(self) -> bool:
        """True while the log refuses appends for capacity (cleared once one is written again)."""
        return self._store.full

    @property
    def unauthenticated_bytes(self) -> int:
        """Bytes held by records about unauthenticated parties."""
        return self._store.untrusted

    @property
    def acknowledged_seq(self) -> int:
        """The highest seq an auditor acknowledged as taken off the meter (0: none)."""
        return read_exported(self.directory, ACKNOWLEDGED_FILE)

    def room_for_unauthenticated(self, size: int) -> bool:
        """Say whether a record about an unauthenticated party of about ``size`` bytes may be written.

        Such records may hold at most ``unauthenticated_share`` percent of the
        capacity, and only where they fit without dropping a segment or taking
        the room an authenticated append needs next: a flood never pushes out
        or refuses anything.
        """
        store, config = self._store, self.config
        capacity = config.capacity_bytes
        share = capacity * config.unauthenticated_share // 100
        headroom = capacity // 50 + UNAUTHENTICATED_HEADROOM
        return store.untrusted + size <= share and store.usage + size + headroom <= capacity

    def acknowledge(self, up_to: int) -> int:
        """Mark every record up to ``up_to`` as taken off the meter by an auditor; return the new mark.

        Under ``drop_exported`` the acknowledged records may then be dropped when
        the log is full, as forwarded ones may.  The mark only moves forward and
        never past the durable head.  The caller records the acknowledgement,
        durably, *before* calling this.

        Raises:
            ValueError: ``up_to`` is beyond the durable head or not positive.
        """
        if not 0 < up_to <= self.head_seq:
            raise ValueError(f"seq {up_to} is not in the log (its head is {self.head_seq})")
        mark = max(self.acknowledged_seq, up_to)
        write_exported(self.directory, mark, ACKNOWLEDGED_FILE)
        return mark

    @property
    def failed(self) -> bool:
        """True once a write failed; every append then raises until the log is reopened."""
        return self._writer.failure is not None

    def close(self) -> None:
        """Write a final checkpoint, stop the writer and close the files."""
        self._writer.close()

    def __enter__(self) -> SecurityLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
