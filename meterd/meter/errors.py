"""The meter's error family, all under :class:`meterd.errors.MeterError`."""

from __future__ import annotations

from meterd.errors import MeterError


class MeterValueError(MeterError):
    """A value or setting is out of range, of the wrong type, or unknown.

    Attributes:
        key: The setting or field name the value was for; empty if none.
        message: What is wrong, without the key or the hint.
        suggestion: A did-you-mean hint for an unknown key, or empty.

    """

    def __init__(self, message: str, *, key: str = "", suggestion: str = "") -> None:
        self.message = message
        self.key = key
        self.suggestion = suggestion
        super().__init__(self.render())

    def render(self) -> str:
        """Return the one-line message a user sees: ``key: what; hint``."""
        text = f"{self.key}: {self.message}" if self.key else self.message
        if self.suggestion:
            text += f'; did you mean "{self.suggestion}"?'
        return text


class MeterStateError(MeterError):
    """The meter's persisted state cannot be read, parsed or written.

    Attributes:
        path: The state file concerned.

    """

    def __init__(self, message: str, *, path: str = "") -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class FirmwareImageError(MeterError):
    """A firmware image is malformed, corrupt or has an unacceptable name."""


class CertificateError(MeterError):
    """A certificate is malformed, already installed, or not installed."""
