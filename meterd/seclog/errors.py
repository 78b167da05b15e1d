"""The security log's error family, all under :class:`meterd.errors.SecurityLogError`.

Every fault carries structured fields so that a caller (the guard, ``meterctl``)
can act on it or print it without parsing the message.
"""

from __future__ import annotations

from meterd.errors import SecurityLogError


class LogUnavailableError(SecurityLogError):
    """An append could not be made durable: the log is closed, failed, overloaded or slow.

    The guard turns this into a deny.  When raised after a timeout, the record
    may still reach the log later; it is never silently dropped while the
    caller is told it was written.

    Attributes:
        reason: Short machine-readable cause (``closed``, ``failed``, ``timeout``,
            ``overloaded``).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        self.reason = reason
        super().__init__(message)


class LogFullError(LogUnavailableError):
    """The log reached its capacity and its full policy forbids dropping anything."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="full")


class RecordRejectedError(SecurityLogError):
    """A record was refused before writing: bad field, oversized or secret-looking detail.

    Attributes:
        field: The offending field or detail key.
    """

    def __init__(self, message: str, *, field: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class LogCorruptError(SecurityLogError):
    """The on-disk log cannot be continued safely (not merely a torn last record).

    Attributes:
        path: The file concerned.
        seq: The sequence number concerned, or 0 when unknown.
    """

    def __init__(self, message: str, *, path: str = "", seq: int = 0) -> None:
        self.path = path
        self.seq = seq
        where = ": ".join(p for p in (path, f"seq {seq}" if seq else "") if p)
        super().__init__(f"{where}: {message}" if where else message)


class LogAccessError(SecurityLogError):
    """Reading the log was refused: the decision does not allow ``security_logs_access``.

    Attributes:
        principal: Who asked.
    """

    def __init__(self, message: str, *, principal: str) -> None:
        self.principal = principal
        super().__init__(message)


class LogKeyError(SecurityLogError):
    """A sealing key is malformed, or the key file does not match the log."""
