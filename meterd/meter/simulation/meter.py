"""A simulated meter that persists its state in the state directory.

:class:`SimulatedMeter` implements :class:`~meterd.meter.interface.Meter`.
Its registers follow a fixed load profile integrated exactly from an injected
clock, so tests drive time by moving the clock.  Its state lives in
``<state_dir>/meter/state.json`` and its file area in
``<state_dir>/files/{data,firmware,certs}``.

Invariants:
    * Every change is written to disk before it is visible in memory; a
      failed write leaves the meter as it was.
    * Reads write nothing unless a newly completed demand block raised the
      peak: the registers are a function of time, so the state on disk plus
      the clock always reproduces them.
    * Nothing here blocks longer than one small file write and fsync; one
      meter object belongs to one thread (the daemon's event loop).
"""

from __future__ import annotations

import dataclasses
import time
import types
from collections.abc import Callable, Mapping
from pathlib import Path

from meterd.errors import MeterError
from meterd.meter.checks import check_time
from meterd.meter.errors import CertificateError, FirmwareImageError, MeterStateError
from meterd.meter.files import CERTS, FIRMWARE, FileArea
from meterd.meter.firmware import check_image, check_name
from meterd.meter.model import (
    CertificateInfo,
    FirmwareImageInfo,
    FirmwareInfo,
    MasterResetReport,
    MeterClock,
    MeterStatus,
    PeakDemand,
    PeakDemandReset,
    Readings,
    match_certificate,
)
from meterd.meter.settings import (
    ION_MODULES,
    CommSettings,
    DssSettings,
    IonModuleParams,
    SettingValue,
    apply_updates,
    unknown_key_error,
)
from meterd.meter.simulation import registers
from meterd.meter.simulation.profile import DEFAULT_PROFILE, LoadProfile
from meterd.meter.simulation.state import MeterState, StateStore
from meterd.statedir import FILE_AREA, METER_STATE

MODEL = "Simulated ION meter"
MAX_CERTIFICATES = 32


class SimulatedMeter:
    """A meter simulated in software, with its state kept on disk.

    Args:
        state_dir: The daemon's state directory; the meter uses ``meter/``
            and ``files/`` inside it.
        clock: Returns true time in POSIX seconds; injected so tests can
            drive the registers.
        profile: The simulated site's load.
        serial_number: Serial number of a newly commissioned meter; a
            reloaded meter keeps its own.

    Raises:
        MeterStateError: The stored state exists but is unreadable or corrupt
            (it is never replaced by a fresh meter), or cannot be written.

    """

    def __init__(
        self,
        state_dir: Path,
        clock: Callable[[], float] = time.time,
        *,
        profile: LoadProfile = DEFAULT_PROFILE,
        serial_number: str = "SIM-0001",
    ) -> None:
        self._clock = clock
        self._profile = profile
        self._store = StateStore(state_dir / METER_STATE.name)
        self._files = FileArea(state_dir / FILE_AREA.name)
        now = self._now()
        stored = self._store.load()
        if stored is None:
            state = MeterState(model=MODEL, serial_number=serial_number, last_update=now, started_at=now)
        else:
            # Power-up: the meter kept measuring while the controller was down.
            state = registers.advance(stored, now, self._profile)
            state = dataclasses.replace(state, started_at=registers.meter_time(state, now))
        try:
            self._files.ensure()
        except OSError as e:
            raise MeterStateError(
                f"cannot create the file area: {e.strerror}", path=str(self._files.root)
            ) from e
        self._state = state
        self._store.save(state)

    # -- helpers ---------------------------------------------------------

    def _now(self) -> float:
        now = self._clock()
        check_time("clock", now)
        return now

    def _advanced(self) -> tuple[MeterState, float]:
        """Return the state integrated up to now, and now (true time)."""
        now = self._now()
        return registers.advance(self._state, now, self._profile), now

    def _commit(self, state: MeterState) -> None:
        self._store.save(state)
        self._state = state

    # -- Meter -----------------------------------------------------------

    @property
    def file_area(self) -> Path:
        """Root of the meter's file area (``data/``, ``firmware/``, ``certs/``)."""
        return self._files.root

    def readings(self) -> Readings:
        """Return the current measurements; see :meth:`Meter.readings`."""
        state, now = self._advanced()
        if state.peak_demand != self._state.peak_demand:
            self._commit(state)
        return Readings(
            timestamp=registers.meter_time(state, now),
            phases=self._profile.phase_readings(now),
            frequency_hz=self._profile.frequency_hz(now),
            energy_import_kwh=state.energy_import_kwh,
            energy_export_kwh=state.energy_export_kwh,
            test_energy_import_kwh=state.test_energy_import_kwh,
            test_energy_export_kwh=state.test_energy_export_kwh,
            demand_kw=registers.demand_kw(state, now, self._profile),
            peak_demand=state.peak_demand,
            test_mode=state.test_mode,
        )

    def status(self) -> MeterStatus:
        """Return the meter's identity, clock and counters."""
        state = self._state
        return MeterStatus(
            model=state.model,
            serial_number=state.serial_number,
            firmware_version=state.firmware_version,
            clock=self.clock(),
            test_mode=state.test_mode,
            started_at=state.started_at,
            restart_count=state.restart_count,
            last_peak_reset=state.last_peak_reset,
            last_master_reset=state.last_master_reset,
            certificate_count=len(state.certificates),
        )

    def reset_peak_demand(self) -> PeakDemandReset:
        """Clear the peak demand; return the cleared peak and the reset time."""
        state, now = self._advanced()
        at = registers.meter_time(state, now)
        self._commit(dataclasses.replace(state, peak_demand=PeakDemand(), last_peak_reset=at))
        return PeakDemandReset(previous=state.peak_demand, reset_at=at)

    def test_mode(self) -> bool:
        """Return True when the meter is in test mode."""
        return self._state.test_mode

    def set_test_mode(self, enabled: bool) -> None:
        """Enter or leave test mode; entering zeroes the test registers."""
        if enabled == self._state.test_mode:
            return
        state, _ = self._advanced()
        if enabled:
            state = dataclasses.replace(state, test_energy_import_kwh=0.0, test_energy_export_kwh=0.0)
        self._commit(dataclasses.replace(state, test_mode=enabled))

    def clock(self) -> MeterClock:
        """Return the meter's time and its offset from true time."""
        now = self._now()
        return MeterClock(
            meter_time=registers.meter_time(self._state, now), offset_s=self._state.clock_offset_s
        )

    def set_clock(self, meter_time: float) -> MeterClock:
        """Set the meter's clock; registers up to now are settled on the old clock."""
        check_time("meter_time", meter_time)
        state, now = self._advanced()
        self._commit(dataclasses.replace(state, clock_offset_s=meter_time - now))
        return MeterClock(meter_time=meter_time, offset_s=meter_time - now)

    def comm_settings(self) -> CommSettings:
        """Return the communication settings."""
        return self._state.comm

    def set_comm_settings(self, updates: Mapping[str, SettingValue]) -> CommSettings:
        """Change some communication settings; see :meth:`Meter.set_comm_settings`."""
        comm = apply_updates(self._state.comm, updates)
        self._commit(dataclasses.replace(self._state, comm=comm))
        return comm

    def dss_settings(self) -> DssSettings:
        """Return the specific setting values (DSS)."""
        return self._state.dss

    def set_dss_settings(self, updates: Mapping[str, SettingValue]) -> DssSettings:
        """Change some setting values; demand so far is settled under the old ones."""
        dss = apply_updates(self._state.dss, updates)
        state, _ = self._advanced()
        self._commit(dataclasses.replace(state, dss=dss))
        return dss

    def ion_modules(self) -> Mapping[str, IonModuleParams]:
        """Return every ION module's parameters, by module handle (read-only)."""
        return types.MappingProxyType(dict(self._state.ion))

    def set_ion_module(self, module: str, updates: Mapping[str, SettingValue]) -> IonModuleParams:
        """Change some parameters of one ION module; see :meth:`Meter.set_ion_module`."""
        if module not in ION_MODULES:
            raise unknown_key_error(module, list(ION_MODULES), "ION module")
        params = apply_updates(self._state.ion[module], updates)
        self._commit(dataclasses.replace(self._state, ion={**self._state.ion, module: params}))
        return params

    def firmware(self) -> FirmwareInfo:
        """Return the running firmware version and the installed images."""
        return FirmwareInfo(version=self._state.firmware_version, images=self._state.firmware_images)

    def install_firmware(self, image: bytes, name: str) -> FirmwareImageInfo:
        """Check an image, store it in ``firmware/`` and run its version."""
        check_name(name)
        checked = check_image(image)
        if any(i.name == name for i in self._state.firmware_images):
            raise FirmwareImageError(f"a firmware image named {name!r} is already installed")
        # An image uploaded into firmware/ beforehand is adopted, never overwritten.
        try:
            present = self._files.holds(FIRMWARE, name, image)
        except OSError as e:
            raise MeterStateError(f"cannot read {FIRMWARE}/{name}: {e.strerror}") from e
        if present is False:
            raise FirmwareImageError(f"a different file named {name!r} is already in {FIRMWARE}/")
        info = FirmwareImageInfo(
            name=name,
            version=checked.version,
            sha256=checked.sha256,
            size_bytes=checked.size_bytes,
            installed_at=self.clock().meter_time,
        )
        self._write_file(FIRMWARE, name, image)
        state = dataclasses.replace(
            self._state, firmware_version=info.version, firmware_images=(*self._state.firmware_images, info)
        )
        self._commit(state)
        return info

    def certificates(self) -> tuple[CertificateInfo, ...]:
        """Return the installed certificates, oldest first."""
        return self._state.certificates

    def install_certificate(self, pem: bytes) -> CertificateInfo:
        """Check a PEM certificate structurally and store it as ``certs/<fingerprint>.pem``."""
        # The certificate parser loads with the first installation, not with the meter.
        from meterd.meter.pem import parse_pem_certificate  # noqa: PLC0415

        parsed = parse_pem_certificate(pem)
        if any(c.fingerprint == parsed.fingerprint for c in self._state.certificates):
            raise CertificateError(f"certificate {parsed.fingerprint} is already installed")
        if len(self._state.certificates) >= MAX_CERTIFICATES:
            raise CertificateError(
                f"the meter holds at most {MAX_CERTIFICATES} certificates; remove one first"
            )
        try:
            info = CertificateInfo(
                fingerprint=parsed.fingerprint,
                subject=parsed.fields.subject,
                issuer=parsed.fields.issuer,
                not_before=parsed.fields.not_before,
                not_after=parsed.fields.not_after,
                installed_at=self.clock().meter_time,
            )
        except MeterError as e:
            raise CertificateError(f"certificate not acceptable: {e}") from e
        self._write_file(CERTS, info.file_name, parsed.pem)
        self._commit(dataclasses.replace(self._state, certificates=(*self._state.certificates, info)))
        return info

    def remove_certificate(self, fingerprint: str) -> CertificateInfo:
        """Remove the one certificate whose fingerprint is or starts with ``fingerprint``."""
        doomed = match_certificate(self._state.certificates, fingerprint)
        remaining = tuple(c for c in self._state.certificates if c is not doomed)
        self._commit(dataclasses.replace(self._state, certificates=remaining))
        try:
            self._files.remove(CERTS, doomed.file_name)
        except OSError as e:
            raise MeterStateError(f"certificate forgotten but its file remains: {e.strerror}") from e
        return doomed

    def master_reset(self) -> MasterResetReport:
        """Clear energy, demand, peak, measurement logs and waveforms; nothing else."""
        state, now = self._advanced()
        at = registers.meter_time(state, now)
        try:
            removed = self._files.clear_measurements()
        except OSError as e:
            raise MeterStateError(f"master reset failed clearing measurement files: {e.strerror}") from e
        cleared = dataclasses.replace(
            state,
            energy_import_kwh=0.0,
            energy_export_kwh=0.0,
            test_energy_import_kwh=0.0,
            test_energy_export_kwh=0.0,
            peak_demand=PeakDemand(),
            last_master_reset=at,
        )
        self._commit(cleared)
        return MasterResetReport(
            at=at,
            energy_import_kwh=state.energy_import_kwh,
            energy_export_kwh=state.energy_export_kwh,
            peak_demand=state.peak_demand,
            removed_files=removed,
        )

    def restart(self) -> MeterStatus:
        """Restart the meter; it comes back out of test mode (billing must resume)."""
        state, now = self._advanced()
        self._commit(
            dataclasses.replace(
                state,
                test_mode=False,
                started_at=registers.meter_time(state, now),
                restart_count=state.restart_count + 1,
            )
        )
        return self.status()

    # -- simulation drivers (not part of Meter) ---------------------------

    def record_interval(self) -> Path:
        """Append the current readings to the measurement log in ``data/``.

        Returns:
            The log's path relative to the file area.

        """
        readings = self.readings()
        try:
            return self._files.append_log_row(readings)
        except OSError as e:
            raise MeterStateError(f"cannot write the measurement log: {e.strerror}") from e

    def capture_waveform(self) -> Path:
        """Write one cycle of voltage and current waveforms into ``data/``.

        Returns:
            The waveform file's path relative to the file area.

        """
        readings = self.readings()
        try:
            return self._files.write_waveform(readings)
        except OSError as e:
            raise MeterStateError(f"cannot write a waveform capture: {e.strerror}") from e

    def _write_file(self, folder: str, name: str, data: bytes) -> None:
        try:
            self._files.write(folder, name, data)
        except OSError as e:
            raise MeterStateError(f"cannot write {folder}/{name}: {e.strerror}") from e
