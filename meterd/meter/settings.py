"""The meter's writable settings: communication, DSS values and ION modules.

Each group is a frozen dataclass that validates itself, so a change is made by
:func:`apply_updates`, which checks the keys (unknown ones get a did-you-mean),
converts text from a shell or a panel to the field's type, and builds a new
value whose constructor checks the ranges.  A rejected change leaves nothing
half-applied.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any, TypeVar, get_type_hints

from meterd.meter.checks import check_choice, check_int, check_number, check_text
from meterd.meter.errors import MeterValueError
from meterd.record import record

SettingValue = str | int | float | bool
"""What a channel may pass as a new setting value; text is converted."""

SettingsT = TypeVar("SettingsT", bound="CommSettings | DssSettings | IonModuleParams")

SERIAL_BAUD_RATES = (2400, 4800, 9600, 19200, 38400, 57600, 115200)
SERIAL_PARITIES = ("none", "even", "odd")
SERIAL_PROTOCOLS = ("modbus_rtu", "ion", "dnp3")
VOLTS_MODES = ("4w_wye", "3w_delta", "direct_delta", "single_phase")
# Demand intervals divide the hour so that blocks align with clock hours.
DEMAND_INTERVALS_MIN = (1, 2, 3, 5, 10, 15, 20, 30, 60)
_TRUE_WORDS = ("on", "true", "yes", "1")
_FALSE_WORDS = ("off", "false", "no", "0")


def _check_ipv4(key: str, value: str) -> None:
    check_text(key, value, 15, r"[0-9.]+")
    try:
        ipaddress.IPv4Address(value)
    except ValueError as e:
        raise MeterValueError(f"{value!r} is not an IPv4 address", key=key) from e


@record
class CommSettings:
    """Network, Modbus and serial port settings.

    Attributes:
        ip_address: The Ethernet port's IPv4 address.
        prefix_length: Network prefix length (24 for 255.255.255.0).
        gateway: Default gateway; ``0.0.0.0`` for none.
        modbus_unit_id: The meter's Modbus unit (slave) identifier.
        modbus_tcp_port: TCP port of the Modbus/TCP server.
        serial_protocol: Protocol on the RS-485 port.
        serial_baud: RS-485 baud rate.
        serial_parity: ``none``, ``even`` or ``odd``.
        serial_stop_bits: 1 or 2.

    """

    ip_address: str = "192.168.1.100"
    prefix_length: int = 24
    gateway: str = "192.168.1.1"
    modbus_unit_id: int = 1
    modbus_tcp_port: int = 502
    serial_protocol: str = "modbus_rtu"
    serial_baud: int = 19200
    serial_parity: str = "even"
    serial_stop_bits: int = 1

    def __post_init__(self) -> None:
        _check_ipv4("ip_address", self.ip_address)
        check_int("prefix_length", self.prefix_length, 1, 32)
        _check_ipv4("gateway", self.gateway)
        check_int("modbus_unit_id", self.modbus_unit_id, 1, 247)
        check_int("modbus_tcp_port", self.modbus_tcp_port, 1, 65535)
        check_choice("serial_protocol", self.serial_protocol, SERIAL_PROTOCOLS)
        check_choice("serial_baud", self.serial_baud, SERIAL_BAUD_RATES)
        check_choice("serial_parity", self.serial_parity, SERIAL_PARITIES)
        check_choice("serial_stop_bits", self.serial_stop_bits, (1, 2))


@record
class DssSettings:
    """The meter's specific setting values (DSS): wiring, ratios and demand.

    Attributes:
        volts_mode: Wiring of the voltage inputs.
        pt_primary_v: Voltage transformer primary rating.
        pt_secondary_v: Voltage transformer secondary rating.
        ct_primary_a: Current transformer primary rating.
        ct_secondary_a: Current transformer secondary rating (1 or 5 A).
        nominal_frequency_hz: 50 or 60.
        demand_interval_min: Length of a block demand interval.

    """

    volts_mode: str = "4w_wye"
    pt_primary_v: float = 230.0
    pt_secondary_v: float = 230.0
    ct_primary_a: float = 100.0
    ct_secondary_a: float = 5.0
    nominal_frequency_hz: int = 50
    demand_interval_min: int = 15

    def __post_init__(self) -> None:
        check_choice("volts_mode", self.volts_mode, VOLTS_MODES)
        check_number("pt_primary_v", self.pt_primary_v, 1.0, 1_000_000.0)
        check_number("pt_secondary_v", self.pt_secondary_v, 1.0, 690.0)
        check_number("ct_primary_a", self.ct_primary_a, 1.0, 100_000.0)
        check_number("ct_secondary_a", self.ct_secondary_a, 1.0, 5.0)
        if self.ct_secondary_a not in (1.0, 5.0):
            raise MeterValueError(f"{self.ct_secondary_a!r} is not one of 1, 5", key="ct_secondary_a")
        check_choice("nominal_frequency_hz", self.nominal_frequency_hz, (50, 60))
        check_choice("demand_interval_min", self.demand_interval_min, DEMAND_INTERVALS_MIN)


@record
class SetpointParams:
    """A Setpoint module: raises its output while a value stays over a limit.

    Attributes:
        enabled: Whether the module evaluates at all.
        high_limit_kw: Pickup threshold.
        low_limit_kw: Dropout threshold; not above ``high_limit_kw``.
        sustain_on_s: How long the value must stay over the limit to pick up.
        sustain_off_s: How long it must stay under to drop out.

    """

    enabled: bool = False
    high_limit_kw: float = 100.0
    low_limit_kw: float = 90.0
    sustain_on_s: int = 30
    sustain_off_s: int = 30

    def __post_init__(self) -> None:
        check_choice("enabled", self.enabled, (True, False))
        check_number("high_limit_kw", self.high_limit_kw, -1_000_000.0, 1_000_000.0)
        check_number("low_limit_kw", self.low_limit_kw, -1_000_000.0, 1_000_000.0)
        if self.low_limit_kw > self.high_limit_kw:
            raise MeterValueError("must not exceed high_limit_kw", key="low_limit_kw")
        check_int("sustain_on_s", self.sustain_on_s, 0, 86_400)
        check_int("sustain_off_s", self.sustain_off_s, 0, 86_400)


@record
class PeriodicTimerParams:
    """A Periodic Timer module: pulses its output every period.

    Attributes:
        period_s: Time between pulses.
        sync_to_clock: Align pulses to the meter clock rather than to start-up.

    """

    period_s: int = 900
    sync_to_clock: bool = True

    def __post_init__(self) -> None:
        check_int("period_s", self.period_s, 1, 86_400)
        check_choice("sync_to_clock", self.sync_to_clock, (True, False))


@record
class DataRecorderParams:
    """A Data Recorder module: logs its inputs on each trigger.

    Attributes:
        depth: Records kept.
        circular: Overwrite the oldest record when full, rather than stop.

    """

    depth: int = 2880
    circular: bool = True

    def __post_init__(self) -> None:
        check_int("depth", self.depth, 1, 100_000)
        check_choice("circular", self.circular, (True, False))


IonModuleParams = SetpointParams | PeriodicTimerParams | DataRecorderParams
"""The parameters of one ION module, whatever its kind."""

ION_MODULES: Mapping[str, type[IonModuleParams]] = {
    "setpoint_1": SetpointParams,
    "setpoint_2": SetpointParams,
    "periodic_timer_1": PeriodicTimerParams,
    "data_recorder_1": DataRecorderParams,
}
"""The ION modules the meter's framework holds, by handle, and their kinds."""


def default_ion_modules() -> dict[str, IonModuleParams]:
    """Return every ION module with its factory default parameters."""
    return {name: kind() for name, kind in ION_MODULES.items()}


def setting_keys(settings: type[Any]) -> tuple[str, ...]:
    """Return the setting names of a settings class, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(settings))


def unknown_key_error(key: str, known: tuple[str, ...] | list[str], what: str) -> MeterValueError:
    """Build the error for an unknown key, with a did-you-mean when one is close.

    Args:
        key: The key as given.
        known: The keys that exist.
        what: What the key names, for the message (``"setting"``, ``"ION module"``).

    """
    import difflib  # noqa: PLC0415 - only a mistake needs it (see meterd.tomlreader.suggest)

    close = difflib.get_close_matches(key, known, n=1)
    return MeterValueError(f"unknown {what}", key=key, suggestion=close[0] if close else "")


def apply_updates(current: SettingsT, updates: Mapping[str, SettingValue]) -> SettingsT:
    """Return ``current`` with ``updates`` applied, converted and validated.

    Text values are converted to the field's type (``"on"``/``"off"`` for
    flags), so a shell can pass what the user typed.

    Raises:
        MeterValueError: No updates, an unknown key (with a did-you-mean), a
            value of the wrong type, or a value out of range.

    """
    if not updates:
        raise MeterValueError("no settings given")
    kind = type(current)
    keys = setting_keys(kind)
    hints = get_type_hints(kind)
    converted: dict[str, Any] = {}
    for key, value in updates.items():
        if key not in keys:
            raise unknown_key_error(key, keys, "setting")
        converted[key] = _convert(key, value, hints[key])
    return dataclasses.replace(current, **converted)


def _convert(key: str, value: SettingValue, target: type[Any]) -> SettingValue:
    """Convert a channel's value to ``target``; range checks are the constructor's."""
    if target is bool:
        return _to_bool(key, value)
    if isinstance(value, bool):
        raise MeterValueError(f"expected {target.__name__}, got a flag", key=key)
    if target is str:
        if not isinstance(value, str):
            raise MeterValueError(f"expected text, got {value!r}", key=key)
        return value.strip()
    try:
        if target is int:
            if isinstance(value, float):
                if not value.is_integer():
                    raise MeterValueError(f"expected an integer, got {value!r}", key=key)
                return int(value)
            return int(value)
        return float(value)
    except (ValueError, OverflowError) as e:
        raise MeterValueError(f"expected {target.__name__}, got {value!r}", key=key) from e


def _to_bool(key: str, value: SettingValue) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise MeterValueError(f"expected on or off, got {value!r}", key=key)
