"""Range checks shared by the meter's value types.

Each check raises :class:`~meterd.meter.errors.MeterValueError` naming the
field, so a bad value is reported the same way wherever it is caught.
"""

from __future__ import annotations

import math
import re

from meterd.meter.errors import MeterValueError

# The meter's calendar ends where its clock hardware's does; a time outside
# this window is a corrupt value, not a date.
EARLIEST_TIME = 946_684_800.0  # 2000-01-01T00:00:00Z
LATEST_TIME = 4_102_444_800.0  # 2100-01-01T00:00:00Z

_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_number(key: str, value: float, low: float, high: float) -> None:
    """Require a finite number (not a bool) in ``[low, high]``.

    Raises:
        MeterValueError: The value is a bool, not finite, or out of range.

    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MeterValueError(f"expected a number, got {value!r}", key=key)
    if not math.isfinite(value) or not low <= value <= high:
        raise MeterValueError(f"{value!r} is outside {low:g}..{high:g}", key=key)


def check_int(key: str, value: int, low: int, high: int) -> None:
    """Require an integer (not a bool) in ``[low, high]``.

    Raises:
        MeterValueError: The value is not an int or out of range.

    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise MeterValueError(f"expected an integer, got {value!r}", key=key)
    if not low <= value <= high:
        raise MeterValueError(f"{value} is outside {low}..{high}", key=key)


def check_choice(key: str, value: object, choices: tuple[object, ...]) -> None:
    """Require one of ``choices`` (compared by type and value).

    Raises:
        MeterValueError: The value is not one of the choices.

    """
    if not any(type(value) is type(c) and value == c for c in choices):
        allowed = ", ".join(str(c) for c in choices)
        raise MeterValueError(f"{value!r} is not one of {allowed}", key=key)


def check_time(key: str, value: float) -> None:
    """Require a POSIX time within the meter's calendar.

    Raises:
        MeterValueError: The time is not a number or outside 2000..2100.

    """
    check_number(key, value, EARLIEST_TIME, LATEST_TIME)


def check_optional_time(key: str, value: float | None) -> None:
    """Like :func:`check_time`, but ``None`` (never happened) is allowed."""
    if value is not None:
        check_time(key, value)


def check_text(key: str, value: str, max_len: int, pattern: str = r"[\x20-\x7e]*") -> None:
    """Require printable ASCII text of at most ``max_len`` characters matching ``pattern``.

    Raises:
        MeterValueError: The text is not a str, too long, or does not match.

    """
    if not isinstance(value, str):
        raise MeterValueError(f"expected text, got {value!r}", key=key)
    if len(value) > max_len:
        raise MeterValueError(f"longer than {max_len} characters", key=key)
    if not re.fullmatch(pattern, value):
        raise MeterValueError(f"{value!r} is not well formed", key=key)


def check_sha256(key: str, value: str) -> None:
    """Require a lower-case hexadecimal SHA-256 digest.

    Raises:
        MeterValueError: The value is not 64 lower-case hex digits.

    """
    if not isinstance(value, str) or not _HEX_SHA256.fullmatch(value):
        raise MeterValueError(f"{value!r} is not a SHA-256 hex digest", key=key)
