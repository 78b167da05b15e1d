"""The Modbus register map: one declarative table, and range lookup over it.

Every register is a holding register (function 03, writable ones with 06 and
16); function 04 reads the same map, for clients that poll input registers.
Addresses are 0-based PDU addresses (reference 40001 is address 0).

Invariants (checked at import):
    * Fields do not overlap, and each group is one contiguous run of
      addresses with unmapped addresses between groups, so any range that is
      entirely mapped lies in exactly one group and needs exactly one permission.
    * Only control groups have writable fields; measurement fields are read-only.
"""

from __future__ import annotations

import enum

from meterd.channels.modbus.encoding import Kind, Value
from meterd.meter.settings import SERIAL_PARITIES, SERIAL_PROTOCOLS, VOLTS_MODES
from meterd.policy.permissions import Permission
from meterd.record import record


class Group(enum.Enum):
    """A run of registers that one permission governs.

    Attributes:
        label: Name used in records and the documentation.
        write_permission: What a write needs; None for read-only registers.
    """

    label: str
    write_permission: Permission | None

    MEASUREMENT = ("measurement", None)
    DEMAND_RESET = ("demand_reset", Permission.PEAK_DEMAND_RESET)
    TEST_MODE = ("test_mode", Permission.TEST_MODE_TOGGLE)
    CLOCK = ("clock", Permission.TIME_SYNC)
    COMM = ("comm", Permission.COMM_CONFIG)
    DSS = ("dss", Permission.DSS_CONFIG)

    def __init__(self, label: str, write_permission: Permission | None) -> None:
        self.label = label
        self.write_permission = write_permission


#: What reading any register needs: read-only data access.
READ_PERMISSION = Permission.FS_READ_ONLY


@record
class Field:
    """One value in the map.

    Attributes:
        address: First register.
        name: The value's name; for settings, the meter's setting key.
        kind: Wire type (and so the number of registers).
        group: Which group, and so which permission, governs it.
        unit: Unit of the value, for the documentation.
        description: One line for the documentation.
        choices: The values an enumeration's indices stand for.
    """

    address: int
    name: str
    kind: Kind
    group: Group
    unit: str = ""
    description: str = ""
    choices: tuple[Value, ...] = ()

    @property
    def end(self) -> int:
        """One past the last register."""
        return self.address + self.kind.words

    @property
    def writable(self) -> bool:
        """True for fields a client may write."""
        return self.group.write_permission is not None


M = Group.MEASUREMENT

REGISTER_MAP: tuple[Field, ...] = (
    Field(0, "energy_import_wh", Kind.U64, M, "Wh", "Billing register, energy delivered"),
    Field(4, "energy_export_wh", Kind.U64, M, "Wh", "Billing register, energy received"),
    Field(8, "test_energy_import_wh", Kind.U64, M, "Wh", "Energy delivered while in test mode"),
    Field(12, "test_energy_export_wh", Kind.U64, M, "Wh", "Energy received while in test mode"),
    Field(16, "demand_kw", Kind.F32, M, "kW", "Demand of the last completed interval"),
    Field(18, "peak_demand_kw", Kind.F32, M, "kW", "Peak demand since the last reset"),
    Field(20, "peak_demand_at", Kind.U32, M, "s", "Meter time of the peak (0: none)"),
    Field(22, "voltage_a_v", Kind.F32, M, "V", "RMS voltage, phase A"),
    Field(24, "voltage_b_v", Kind.F32, M, "V", "RMS voltage, phase B"),
    Field(26, "voltage_c_v", Kind.F32, M, "V", "RMS voltage, phase C"),
    Field(28, "current_a_a", Kind.F32, M, "A", "RMS current, phase A"),
    Field(30, "current_b_a", Kind.F32, M, "A", "RMS current, phase B"),
    Field(32, "current_c_a", Kind.F32, M, "A", "RMS current, phase C"),
    Field(34, "power_a_kw", Kind.F32, M, "kW", "Active power, phase A"),
    Field(36, "power_b_kw", Kind.F32, M, "kW", "Active power, phase B"),
    Field(38, "power_c_kw", Kind.F32, M, "kW", "Active power, phase C"),
    Field(40, "power_total_kw", Kind.F32, M, "kW", "Net active power, all phases"),
    Field(42, "frequency_hz", Kind.F32, M, "Hz", "System frequency"),
    Field(44, "test_mode", Kind.U16, M, "", "1 while the meter is in test mode"),
    Field(45, "firmware_major", Kind.U16, M, "", "Running firmware version, major"),
    Field(46, "firmware_minor", Kind.U16, M, "", "Running firmware version, minor"),
    Field(47, "firmware_patch", Kind.U16, M, "", "Running firmware version, patch"),
    Field(48, "meter_time", Kind.U32, M, "s", "Meter clock, POSIX seconds"),
    Field(50, "last_peak_reset", Kind.U32, M, "s", "Meter time of the last peak demand reset (0: none)"),
    Field(100, "demand_reset", Kind.U16, Group.DEMAND_RESET, "", "Write 1 to reset the peak demand; reads 0"),
    Field(110, "test_mode", Kind.U16, Group.TEST_MODE, "", "Write 1 to enter test mode, 0 to leave it"),
    Field(120, "clock", Kind.U32, Group.CLOCK, "s", "Write the meter time (POSIX seconds, both registers)"),
    Field(200, "ip_address", Kind.IPV4, Group.COMM, "", "Ethernet IPv4 address"),
    Field(202, "prefix_length", Kind.U16, Group.COMM, "", "Network prefix length"),
    Field(203, "gateway", Kind.IPV4, Group.COMM, "", "Default gateway"),
    Field(205, "modbus_unit_id", Kind.U16, Group.COMM, "", "The meter's Modbus unit id setting"),
    Field(206, "modbus_tcp_port", Kind.U16, Group.COMM, "", "Modbus/TCP port setting"),
    Field(207, "serial_protocol", Kind.ENUM, Group.COMM, "", "RS-485 protocol", SERIAL_PROTOCOLS),
    Field(208, "serial_baud", Kind.U32, Group.COMM, "Bd", "RS-485 baud rate"),
    Field(210, "serial_parity", Kind.ENUM, Group.COMM, "", "RS-485 parity", SERIAL_PARITIES),
    Field(211, "serial_stop_bits", Kind.U16, Group.COMM, "", "RS-485 stop bits"),
    Field(300, "volts_mode", Kind.ENUM, Group.DSS, "", "Wiring of the voltage inputs", VOLTS_MODES),
    Field(301, "pt_primary_v", Kind.F32, Group.DSS, "V", "Voltage transformer primary"),
    Field(303, "pt_secondary_v", Kind.F32, Group.DSS, "V", "Voltage transformer secondary"),
    Field(305, "ct_primary_a", Kind.F32, Group.DSS, "A", "Current transformer primary"),
    Field(307, "ct_secondary_a", Kind.F32, Group.DSS, "A", "Current transformer secondary"),
    Field(309, "nominal_frequency_hz", Kind.U16, Group.DSS, "Hz", "Nominal frequency"),
    Field(310, "demand_interval_min", Kind.U16, Group.DSS, "min", "Demand interval"),
)


def _index(fields: tuple[Field, ...]) -> dict[int, tuple[Field, int]]:
    """Map every register address to its field and the word's offset in it."""
    index: dict[int, tuple[Field, int]] = {}
    spans: dict[Group, tuple[int, int]] = {}
    for f in fields:
        for offset in range(f.kind.words):
            if f.address + offset in index:
                raise ValueError(f"register {f.address + offset} mapped twice")
            index[f.address + offset] = (f, offset)
        low, high = spans.get(f.group, (f.address, f.end))
        spans[f.group] = (min(low, f.address), max(high, f.end))
    for group, (low, high) in spans.items():
        inside = [index.get(a) for a in range(low, high)]
        if any(hit is None or hit[0].group is not group for hit in inside):
            raise ValueError(f"group {group.label} is not one contiguous run")
        if high in index or low - 1 in index:
            raise ValueError(f"group {group.label} touches another group")
    return index


INDEX = _index(REGISTER_MAP)
#: Each group's fields, in address order, and the address just past its last register.
GROUP_FIELDS = {g: tuple(f for f in REGISTER_MAP if f.group is g) for g in Group}
_GROUP_END = {g: fields[-1].end for g, fields in GROUP_FIELDS.items() if fields}


def group_of(address: int, count: int) -> Group | None:
    """The group ``[address, address + count)`` lies in, or None if any of it is unmapped.

    Equivalent to the group of :func:`fields_in` (groups are contiguous runs with
    unmapped addresses between them), without looking at every register.
    """
    hit = INDEX.get(address)
    if hit is None or count < 1:
        return None
    group = hit[0].group
    return group if address + count <= _GROUP_END[group] else None


def fields_in(address: int, count: int) -> tuple[Field, ...] | None:
    """Return the fields the registers ``[address, address + count)`` touch, in order.

    Returns:
        None if any register in the range is unmapped (exception 02).  By the
        module's invariants, the fields returned all share one group.
    """
    out: list[Field] = []
    for a in range(address, address + count):
        hit = INDEX.get(a)
        if hit is None:
            return None
        if not out or out[-1] is not hit[0]:
            out.append(hit[0])
    return tuple(out)


def covers_whole_fields(fields: tuple[Field, ...], address: int, count: int) -> bool:
    """True if ``[address, address + count)`` starts and ends on field boundaries."""
    return bool(fields) and fields[0].address == address and fields[-1].end == address + count
