"""Between registers and the meter: reading a group's values, turning written words into a change.

Nothing here decides anything: reads run after the guard allowed them, and
:func:`decode_write` only checks that the words make sense (it runs before
the guard is asked, so a nonsensical write never uses up the demand-reset
lockout period); :func:`apply` runs after an allow.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import time
from collections.abc import Callable, Mapping

from meterd.channels.modbus.encoding import EncodingError, Value, decode, encode
from meterd.channels.modbus.registers import GROUP_FIELDS, Field, Group
from meterd.meter.interface import Meter
from meterd.record import record

_MEASUREMENTS = GROUP_FIELDS[Group.MEASUREMENT]
#: The address of the first measurement register.
MEASUREMENT_BASE = _MEASUREMENTS[0].address


def _measurements(meter: Meter) -> dict[str, Value]:
    r = meter.readings()
    major, minor, patch = (int(p) for p in meter.firmware().version.split("."))
    last_reset = meter.status().last_peak_reset
    values: dict[str, Value] = {
        "energy_import_wh": round(r.energy_import_kwh * 1000),
        "energy_export_wh": round(r.energy_export_kwh * 1000),
        "test_energy_import_wh": round(r.test_energy_import_kwh * 1000),
        "test_energy_export_wh": round(r.test_energy_export_kwh * 1000),
        "demand_kw": r.demand_kw,
        "peak_demand_kw": r.peak_demand.kw,
        "peak_demand_at": int(r.peak_demand.at or 0),
        "power_total_kw": r.total_power_kw,
        "frequency_hz": r.frequency_hz,
        "test_mode": int(r.test_mode),
        "firmware_major": major,
        "firmware_minor": minor,
        "firmware_patch": patch,
        "meter_time": int(r.timestamp),
        "last_peak_reset": int(last_reset or 0),
    }
    for phase, p in zip("abc", r.phases, strict=True):
        values[f"voltage_{phase}_v"] = p.voltage_v
        values[f"current_{phase}_a"] = p.current_a
        values[f"power_{phase}_kw"] = p.power_kw
    return values


class MeasurementCache:
    """The measurement registers' values, refreshed at most every ``max_age`` seconds.

    A SCADA poll loop reads the same registers many times a second; the
    meter's own registers refresh about once a second, so computing a full
    snapshot per request would only cost time, and so would encoding it:
    :meth:`registers` encodes the snapshot once.  Writes through this channel
    call :meth:`invalidate`, so a client reads back what it just changed.

    Args:
        meter: The meter read.
        max_age: Longest a snapshot is served, in seconds.
        clock: Monotonic clock.
    """

    def __init__(
        self, meter: Meter, max_age: float = 0.1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.meter = meter
        self.max_age = max_age
        self._clock = clock
        self._values: Mapping[str, Value] = {}
        self._taken = -math.inf
        self._encoded_from: Mapping[str, Value] | None = None
        self._encoded = b""

    def get(self) -> Mapping[str, Value]:
        """Return the measurement values, fresh if the last snapshot is too old."""
        now = self._clock()
        if now - self._taken > self.max_age:
            self._values = _measurements(self.meter)
            self._taken = now
        return self._values

    def registers(self) -> bytes:
        """Return the measurement registers as on the wire (big-endian), from :data:`MEASUREMENT_BASE`."""
        values = self._values
        if self._clock() - self._taken > self.max_age:  # get(), inlined: this runs per request
            values = self.get()
        if values is not self._encoded_from:
            words = [w for f in _MEASUREMENTS for w in encode(f.kind, values[f.name], f.choices)]
            self._encoded = struct.pack(f">{len(words)}H", *words)
            self._encoded_from = values
        return self._encoded

    def invalidate(self) -> None:
        """Forget the snapshot (after a write changed the meter)."""
        self._taken = -math.inf


def snapshot(meter: Meter, group: Group, cache: MeasurementCache | None = None) -> Mapping[str, Value]:
    """Return the current value of every field of ``group``, by field name."""
    if group is Group.MEASUREMENT:
        return cache.get() if cache is not None else _measurements(meter)
    if group is Group.DEMAND_RESET:
        return {"demand_reset": 0}
    if group is Group.TEST_MODE:
        return {"test_mode": int(meter.test_mode())}
    if group is Group.CLOCK:
        return {"clock": int(meter.clock().meter_time)}
    settings = meter.comm_settings() if group is Group.COMM else meter.dss_settings()
    return dataclasses.asdict(settings)


def read_words(
    meter: Meter, fields: tuple[Field, ...], address: int, count: int, cache: MeasurementCache | None = None
) -> list[int]:
    """Return the words of ``[address, address + count)``, which ``fields`` cover."""
    if fields[0].group is Group.MEASUREMENT and cache is not None:
        start = 2 * (address - MEASUREMENT_BASE)
        return list(struct.unpack(f">{count}H", cache.registers()[start : start + 2 * count]))
    values = snapshot(meter, fields[0].group, cache)
    words: list[int] = []
    for f in fields:
        words.extend(encode(f.kind, values[f.name], f.choices))
    start = address - fields[0].address
    return words[start : start + count]


@record
class Change:
    """A decoded write: which group, and the new value of each field written.

    Attributes:
        group: The group written (all fields of a write share one).
        values: New values by field name.
    """

    group: Group
    values: Mapping[str, Value]

    def describe(self) -> str:
        """Return ``name=value,...`` for the security log (bounded)."""
        return ",".join(f"{k}={v}" for k, v in self.values.items())[:200]


def decode_write(fields: tuple[Field, ...], words: tuple[int, ...]) -> Change:
    """Turn the words written to whole ``fields`` into a change.

    Raises:
        EncodingError: A value no field of its kind can hold, a command other
            than 1 to the demand reset register, or a test mode other than 0 or 1.
    """
    values: dict[str, Value] = {}
    offset = 0
    for f in fields:
        values[f.name] = decode(f.kind, words[offset : offset + f.kind.words], f.choices)
        offset += f.kind.words
    group = fields[0].group
    if group is Group.DEMAND_RESET and values["demand_reset"] != 1:
        raise EncodingError("write 1 to reset the peak demand")
    if group is Group.TEST_MODE and values["test_mode"] not in (0, 1):
        raise EncodingError("test mode is 0 or 1")
    return Change(group, values)


def apply(meter: Meter, change: Change) -> None:
    """Make the change on the meter (after the guard allowed it).

    Raises:
        MeterError: The meter refused the value (``MeterValueError``) or failed.
    """
    group, values = change.group, change.values
    if group is Group.DEMAND_RESET:
        meter.reset_peak_demand()
    elif group is Group.TEST_MODE:
        meter.set_test_mode(bool(values["test_mode"]))
    elif group is Group.CLOCK:
        meter.set_clock(float(values["clock"]))
    elif group is Group.COMM:
        meter.set_comm_settings(values)
    elif group is Group.DSS:
        meter.set_dss_settings(values)
    else:
        raise EncodingError(f"{group.label} registers are read-only")
