"""The values the meter reports: readings, status, firmware and certificates.

Every type is a frozen, slotted dataclass whose constructor checks its ranges,
so a value that exists is a value the meter could really report.  Times are
POSIX seconds on the *meter's* clock (true time plus the clock offset).
Energies are in kWh, demand and power in kW (positive: import, delivered to
the customer; negative: export, received from the customer).
"""

from __future__ import annotations

from collections.abc import Iterable

from meterd.meter.checks import (
    EARLIEST_TIME,
    LATEST_TIME,
    check_int,
    check_number,
    check_optional_time,
    check_sha256,
    check_text,
    check_time,
)
from meterd.meter.errors import CertificateError, MeterValueError
from meterd.record import record

# Generous physical bounds: they reject corrupt values, not unusual sites.
MAX_VOLTAGE_V = 1_000_000.0
MAX_CURRENT_A = 100_000.0
MAX_POWER_KW = 1_000_000.0
MAX_ENERGY_KWH = 1e12
PHASES = ("a", "b", "c")
MAX_CLOCK_OFFSET_S = LATEST_TIME - EARLIEST_TIME
VERSION_PATTERN = r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"
# Short prefixes would let a typo remove the wrong certificate.
MIN_FINGERPRINT_PREFIX = 8


@record
class PhaseReading:
    """Instantaneous figures of one phase.

    Attributes:
        voltage_v: RMS line-to-neutral voltage.
        current_a: RMS current.
        power_kw: Active power; negative when the phase exports.

    """

    voltage_v: float
    current_a: float
    power_kw: float

    def __post_init__(self) -> None:
        check_number("voltage_v", self.voltage_v, 0.0, MAX_VOLTAGE_V)
        check_number("current_a", self.current_a, 0.0, MAX_CURRENT_A)
        check_number("power_kw", self.power_kw, -MAX_POWER_KW, MAX_POWER_KW)


@record
class PeakDemand:
    """The highest block demand since the last peak demand reset.

    Attributes:
        kw: The peak; 0.0 when no demand interval has completed since the reset.
        at: Meter time of the end of the interval that set the peak, or None.

    """

    kw: float = 0.0
    at: float | None = None

    def __post_init__(self) -> None:
        check_number("peak_demand_kw", self.kw, 0.0, MAX_POWER_KW)
        check_optional_time("peak_demand_at", self.at)


@record
class Readings:
    """One snapshot of the meter's measurements.

    Billing registers never advance while test mode is on; the energy measured
    then goes to the separate test registers instead, and ``test_mode`` marks
    the snapshot so no consumer mistakes it for billing data.

    Attributes:
        timestamp: Meter time of the snapshot.
        phases: Phase A, B and C figures, in that order.
        frequency_hz: System frequency.
        energy_import_kwh: Billing register, energy delivered.
        energy_export_kwh: Billing register, energy received.
        test_energy_import_kwh: Energy delivered while in test mode.
        test_energy_export_kwh: Energy received while in test mode.
        demand_kw: Import demand of the last completed demand interval.
        peak_demand: Highest billing demand since the last peak reset.
        test_mode: True when the meter is in test mode.

    """

    timestamp: float
    phases: tuple[PhaseReading, PhaseReading, PhaseReading]
    frequency_hz: float
    energy_import_kwh: float
    energy_export_kwh: float
    test_energy_import_kwh: float
    test_energy_export_kwh: float
    demand_kw: float
    peak_demand: PeakDemand
    test_mode: bool

    def __post_init__(self) -> None:
        check_time("timestamp", self.timestamp)
        if len(self.phases) != len(PHASES):
            raise MeterValueError(f"expected {len(PHASES)} phases, got {len(self.phases)}", key="phases")
        check_number("frequency_hz", self.frequency_hz, 40.0, 70.0)
        for key in (
            "energy_import_kwh",
            "energy_export_kwh",
            "test_energy_import_kwh",
            "test_energy_export_kwh",
        ):
            check_number(key, getattr(self, key), 0.0, MAX_ENERGY_KWH)
        check_number("demand_kw", self.demand_kw, 0.0, MAX_POWER_KW)

    @property
    def total_power_kw(self) -> float:
        """Net active power of all phases (negative when the site exports)."""
        return sum(p.power_kw for p in self.phases)


@record
class PeakDemandReset:
    """What a peak demand reset cleared, and when.

    Attributes:
        previous: The peak demand as it stood before the reset.
        reset_at: Meter time of the reset.

    """

    previous: PeakDemand
    reset_at: float

    def __post_init__(self) -> None:
        check_time("reset_at", self.reset_at)


@record
class MeterClock:
    """The meter's clock.

    Attributes:
        meter_time: What the meter's clock reads now.
        offset_s: Meter time minus the controller's true time.

    """

    meter_time: float
    offset_s: float

    def __post_init__(self) -> None:
        check_time("meter_time", self.meter_time)
        check_number("offset_s", self.offset_s, -MAX_CLOCK_OFFSET_S, MAX_CLOCK_OFFSET_S)


@record
class FirmwareImageInfo:
    """One firmware image accepted into the meter's firmware area.

    Attributes:
        name: File name under ``firmware/``.
        version: Version the image's header declares.
        sha256: Hex SHA-256 of the whole image file.
        size_bytes: Size of the image file.
        installed_at: Meter time of the install.

    """

    name: str
    version: str
    sha256: str
    size_bytes: int
    installed_at: float

    def __post_init__(self) -> None:
        check_text("name", self.name, 128, r"[A-Za-z0-9][A-Za-z0-9._-]*")
        check_text("version", self.version, 11, VERSION_PATTERN)
        check_sha256("sha256", self.sha256)
        check_int("size_bytes", self.size_bytes, 1, 1 << 40)
        check_time("installed_at", self.installed_at)


@record
class FirmwareInfo:
    """The running firmware and the images installed.

    Attributes:
        version: Version of the running firmware.
        images: Installed images, oldest first.

    """

    version: str
    images: tuple[FirmwareImageInfo, ...] = ()

    def __post_init__(self) -> None:
        check_text("version", self.version, 11, VERSION_PATTERN)


@record
class CertificateInfo:
    """An installed X.509 certificate, as far as the meter records it.

    Attributes:
        fingerprint: Hex SHA-256 of the certificate's DER encoding; its identity.
        subject: The subject name, e.g. ``CN=scada-1,O=Utility``.
        issuer: The issuer name in the same form.
        not_before: Start of validity (POSIX seconds).
        not_after: End of validity (POSIX seconds).
        installed_at: Meter time of the install.

    """

    fingerprint: str
    subject: str
    issuer: str
    not_before: float
    not_after: float
    installed_at: float

    def __post_init__(self) -> None:
        check_sha256("fingerprint", self.fingerprint)
        check_text("subject", self.subject, 1024, r"[^\x00-\x1f\x7f]*")
        check_text("issuer", self.issuer, 1024, r"[^\x00-\x1f\x7f]*")
        # X.509 validity spans years 1950..9999; keep the raw bounds wide.
        check_number("not_before", self.not_before, -1e12, 1e12)
        check_number("not_after", self.not_after, -1e12, 1e12)
        if self.not_after < self.not_before:
            raise MeterValueError("ends before it begins", key="not_after")
        check_time("installed_at", self.installed_at)

    @property
    def file_name(self) -> str:
        """The certificate's file name under ``certs/``."""
        return f"{self.fingerprint}.pem"


def match_certificate(certificates: Iterable[CertificateInfo], fingerprint: str) -> CertificateInfo:
    """Return the one certificate whose fingerprint is or starts with ``fingerprint``.

    ``fingerprint`` may be upper case and colon-separated, as tools print it.

    Raises:
        CertificateError: Fewer than :data:`MIN_FINGERPRINT_PREFIX` hex digits
            given, or no certificate or more than one matches.

    """
    wanted = fingerprint.strip().lower().replace(":", "")
    if len(wanted) < MIN_FINGERPRINT_PREFIX:
        raise CertificateError(f"give at least {MIN_FINGERPRINT_PREFIX} hex digits of the fingerprint")
    matches = [c for c in certificates if c.fingerprint.startswith(wanted)]
    if len(matches) != 1:
        found = "no installed certificate" if not matches else f"{len(matches)} certificates"
        raise CertificateError(f"{found} matches fingerprint {fingerprint!r}")
    return matches[0]


@record
class MasterResetReport:
    """What a master reset cleared.

    Attributes:
        at: Meter time of the reset.
        energy_import_kwh: Billing import register before the reset.
        energy_export_kwh: Billing export register before the reset.
        peak_demand: Peak demand before the reset.
        removed_files: Paths, relative to the file area, of the logs and
            waveforms deleted.

    """

    at: float
    energy_import_kwh: float
    energy_export_kwh: float
    peak_demand: PeakDemand
    removed_files: tuple[str, ...]

    def __post_init__(self) -> None:
        check_time("at", self.at)


@record
class MeterStatus:
    """The meter's identity and housekeeping state.

    Attributes:
        model: Meter model name.
        serial_number: Meter serial number.
        firmware_version: Version of the running firmware.
        clock: The meter's clock.
        test_mode: True when the meter is in test mode.
        started_at: Meter time of the last (re)start.
        restart_count: Restarts since the meter was first commissioned.
        last_peak_reset: Meter time of the last peak demand reset, or None.
        last_master_reset: Meter time of the last master reset, or None.
        certificate_count: Number of installed certificates.

    """

    model: str
    serial_number: str
    firmware_version: str
    clock: MeterClock
    test_mode: bool
    started_at: float
    restart_count: int
    last_peak_reset: float | None
    last_master_reset: float | None
    certificate_count: int

    def __post_init__(self) -> None:
        check_time("started_at", self.started_at)
        check_int("restart_count", self.restart_count, 0, 1 << 31)
        check_optional_time("last_peak_reset", self.last_peak_reset)
        check_optional_time("last_master_reset", self.last_master_reset)
