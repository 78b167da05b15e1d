"""The one interface every meter implementation provides.

A firmware binding and :class:`~meterd.meter.simulation.SimulatedMeter` both
implement :class:`Meter`.  No method checks permissions: the guard has already
allowed the request before any of them is called.  Every method either
completes or raises a :class:`~meterd.errors.MeterError`; a request refused
for bad input (a :class:`~meterd.meter.errors.MeterValueError`, a rejected
image or certificate) has changed nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from meterd.meter.model import (
    CertificateInfo,
    FirmwareImageInfo,
    FirmwareInfo,
    MasterResetReport,
    MeterClock,
    MeterStatus,
    PeakDemandReset,
    Readings,
)
from meterd.meter.settings import CommSettings, DssSettings, IonModuleParams, SettingValue


class Meter(Protocol):
    """An electricity meter as meterd's actions see it."""

    @property
    def file_area(self) -> Path:
        """Root of the meter's file area (``data/``, ``firmware/``, ``certs/``), served over SFTP."""
        ...

    def readings(self) -> Readings:
        """Return the current measurements; ``test_mode`` marks test-mode snapshots."""
        ...

    def status(self) -> MeterStatus:
        """Return the meter's identity, clock, test mode and housekeeping counters."""
        ...

    def reset_peak_demand(self) -> PeakDemandReset:
        """Clear the peak demand; return the peak that was cleared and when."""
        ...

    def test_mode(self) -> bool:
        """Return True when the meter is in test mode."""
        ...

    def set_test_mode(self, enabled: bool) -> None:
        """Enter or leave test mode.

        Entering test mode zeroes the test registers; while it is on, measured
        energy goes to them and the billing registers and peak demand hold.
        Setting the mode it is already in changes nothing.
        """
        ...

    def clock(self) -> MeterClock:
        """Return the meter's time and its offset from true time."""
        ...

    def set_clock(self, meter_time: float) -> MeterClock:
        """Set the meter's clock to ``meter_time`` (POSIX seconds).

        Raises:
            MeterValueError: The time is outside the meter's calendar.

        """
        ...

    def comm_settings(self) -> CommSettings:
        """Return the communication settings."""
        ...

    def set_comm_settings(self, updates: Mapping[str, SettingValue]) -> CommSettings:
        """Change some communication settings; return them all as they now are.

        Raises:
            MeterValueError: An unknown key (with a did-you-mean) or a bad value;
                nothing is changed.

        """
        ...

    def dss_settings(self) -> DssSettings:
        """Return the specific setting values (DSS)."""
        ...

    def set_dss_settings(self, updates: Mapping[str, SettingValue]) -> DssSettings:
        """Change some setting values; return them all as they now are.

        Raises:
            MeterValueError: An unknown key (with a did-you-mean) or a bad value;
                nothing is changed.

        """
        ...

    def ion_modules(self) -> Mapping[str, IonModuleParams]:
        """Return every ION module's parameters, by module handle."""
        ...

    def set_ion_module(self, module: str, updates: Mapping[str, SettingValue]) -> IonModuleParams:
        """Change some parameters of one ION module; return them all as they now are.

        Raises:
            MeterValueError: An unknown module or key (with a did-you-mean) or a
                bad value; nothing is changed.

        """
        ...

    def firmware(self) -> FirmwareInfo:
        """Return the running firmware version and the installed images."""
        ...

    def install_firmware(self, image: bytes, name: str) -> FirmwareImageInfo:
        """Check and install a firmware image under ``firmware/name``; it then runs.

        Raises:
            FirmwareImageError: The image fails its check, or the name is
                unsafe or already taken.

        """
        ...

    def certificates(self) -> tuple[CertificateInfo, ...]:
        """Return the installed certificates, oldest first."""
        ...

    def install_certificate(self, pem: bytes) -> CertificateInfo:
        """Check and install one PEM certificate under ``certs/``.

        Raises:
            CertificateError: Not exactly one well-formed certificate, a private
                key, already installed, or too many certificates.

        """
        ...

    def remove_certificate(self, fingerprint: str) -> CertificateInfo:
        """Remove the certificate whose SHA-256 fingerprint is or starts with ``fingerprint``.

        Raises:
            CertificateError: No certificate, or more than one, matches.

        """
        ...

    def master_reset(self) -> MasterResetReport:
        """Clear energy, demand, peak demand, measurement logs and waveforms.

        Settings, firmware, certificates and anything outside the meter's own
        state (the security log above all) are untouched.
        """
        ...

    def restart(self) -> MeterStatus:
        """Restart the meter; it comes back out of test mode. Return its status."""
        ...

    def record_interval(self) -> Path:
        """Append the current readings to the measurement log in ``data/`` (the daemon's interval tick).

        Returns:
            The log's path relative to the file area.

        Raises:
            MeterStateError: The log could not be written.
        """
        ...
