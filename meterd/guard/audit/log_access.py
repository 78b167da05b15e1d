"""The audit step's side of the log's own state and contents: fill, acknowledgement, reading, checks."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from meterd.guard.audit.writer import AuditWriter
from meterd.guard.sessions import Session
from meterd.policy.compile import CompiledPolicy
from meterd.policy.permissions import Permission
from meterd.policy.request import Decision, Outcome
from meterd.record import record
from meterd.seclog import EventType, Query, Record
from meterd.seclog.errors import LogUnavailableError

if TYPE_CHECKING:
    from meterd.seclog.report import VerifyReport


@record
class LogStatus:
    """What ``show status`` says of the security log.

    Attributes:
        fill_percent: Used share of the capacity.
        warning_level: The highest configured fill warning reached (0: none).
        full: Appends are refused for capacity: recorded actions are refused
            until records are exported or acknowledged (``drop_exported``).
        failed: A write failed; the log refuses every append until restarted.
        full_policy: What the log does at capacity.
        unauthenticated_percent: Share of the capacity held by records about
            unauthenticated parties.
        acknowledged_seq: The highest seq an auditor acknowledged.
        head_seq: The last durable record.
        refusals_to_summarise: Counted refusals not yet written as summaries.
    """

    fill_percent: int
    warning_level: int
    full: bool
    failed: bool
    full_policy: str
    unauthenticated_percent: int
    acknowledged_seq: int
    head_seq: int
    refusals_to_summarise: int


class Audit(AuditWriter):
    """The audit step of one guard: its writing (:class:`AuditWriter`) and the log's state and contents."""

    def status(self) -> LogStatus:
        """The security log's fill state (read-only, nothing recorded)."""
        seclog = self.seclog
        config = seclog.config
        percent = seclog.usage_bytes * 100 // config.capacity_bytes
        return LogStatus(
            fill_percent=percent,
            warning_level=seclog.warning_level,
            full=seclog.full,
            failed=seclog.failed,
            full_policy=config.full_policy.value,
            unauthenticated_percent=seclog.unauthenticated_bytes * 100 // config.capacity_bytes,
            acknowledged_seq=seclog.acknowledged_seq,
            head_seq=seclog.head_seq,
            refusals_to_summarise=self.refusals_to_summarise,
        )

    async def acknowledge(
        self, compiled: CompiledPolicy, session: Session, allowed: Decision, up_to: int
    ) -> int:
        """Record an auditor's acknowledgement durably, then move the mark.

        See :meth:`meterd.guard.Guard.acknowledge_log` for the arguments and errors.
        """
        request = allowed.request
        if (
            not allowed.allowed
            or request.permission is not Permission.SECURITY_LOGS_ACCESS
            or request.principal != session.principal
        ):
            raise ValueError("acknowledging the security log needs an allow of security_logs_access")
        head = self.seclog.head_seq
        if not 0 < up_to <= head:
            raise ValueError(f"seq {up_to} is not in the log (its head is {head})")
        if not await self.record(
            compiled,
            EventType.AUDIT_LOG_ACCESS,
            session.principal,
            Outcome.ALLOW,
            channel=session.channel,
            source=session.source,
            permission=Permission.SECURITY_LOGS_ACCESS,
            resource=request.resource,
            detail={"acknowledged_to": up_to},
        ):
            raise LogUnavailableError(
                "the acknowledgement could not be recorded; nothing was acknowledged", reason="failed"
            )
        return await asyncio.to_thread(self.seclog.acknowledge, up_to)

    async def read(self, allowed: Decision, query: Query) -> list[Record]:
        """The records ``query`` selects, for a reader holding an allow of ``security_logs_access``."""
        return await asyncio.to_thread(self.seclog.read, allowed, query)

    async def read_frames(self, allowed: Decision) -> bytes:
        """Every stored record line byte for byte (a copy that verifies), gated like :meth:`read`."""
        return await asyncio.to_thread(self.seclog.read_frames, allowed)

    async def checkpoint(self) -> int:
        """Seal a checkpoint of the log's head now; return its seq."""
        return await asyncio.to_thread(self.seclog.checkpoint)

    async def verify(self) -> VerifyReport:
        """Check the chain of the whole log (MACs need the auditor's key, off the meter)."""
        # The verifier loads when an auditor first asks for a check, not with every meter.
        from meterd.seclog.verify import verify  # noqa: PLC0415

        return await asyncio.to_thread(verify, self.seclog.directory)
