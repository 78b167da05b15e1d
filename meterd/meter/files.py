"""The meter's file area, served over SFTP: ``data/``, ``firmware/``, ``certs/``.

The meter writes its measurement log and waveform captures into ``data/``,
firmware images into ``firmware/`` and certificates into ``certs/``.  A
master reset removes only what the meter itself records in ``data/`` (the
measurement logs and waveforms, recognised by name); anything else in the
area is left alone.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import os
from pathlib import Path

from meterd.fsutil import atomic_write, fsync_directory
from meterd.meter.model import PHASES, Readings

DATA, FIRMWARE, CERTS = "data", "firmware", "certs"
MEASUREMENT_LOG = "measurements.csv"
MEASUREMENT_LOG_GLOB = "measurements*.csv"
WAVEFORM_GLOB = "waveform-*.csv"
WAVEFORM_SAMPLES_PER_CYCLE = 64
# Share of third harmonic in the simulated current: real loads distort it a little.
_THIRD_HARMONIC = 0.08

LOG_HEADER = (
    "timestamp,energy_import_kwh,energy_export_kwh,test_energy_import_kwh,test_energy_export_kwh,"
    "demand_kw,peak_demand_kw,"
    + ",".join(f"voltage_{p}_v,current_{p}_a,power_{p}_kw" for p in PHASES)
    + ",frequency_hz,test_mode\n"
)


def iso_time(t: float) -> str:
    """Return ``t`` as an ISO 8601 UTC time to the second, e.g. ``2026-01-01T00:00:00Z``."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FileArea:
    """The directory tree behind the meter's SFTP view.

    Args:
        root: The area's root; its ``data``, ``firmware`` and ``certs``
            folders are created by :meth:`ensure`.

    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self) -> None:
        """Create the area's folders if they are missing."""
        for name in (DATA, FIRMWARE, CERTS):
            (self.root / name).mkdir(mode=0o750, parents=True, exist_ok=True)

    def write(self, folder: str, name: str, data: bytes) -> Path:
        """Atomically write ``folder/name`` and return its path relative to the area.

        A link already at that name is replaced, never followed.
        """
        self.ensure()
        atomic_write(self.root / folder / name, data, mode=0o640)
        return Path(folder, name)

    def holds(self, folder: str, name: str, data: bytes) -> bool | None:
        """Say whether ``folder/name`` holds exactly ``data``; None if there is no such entry.

        A link is reported as not holding ``data``, without being followed.
        """
        path = self.root / folder / name
        if path.is_symlink():
            return False
        if not path.exists():
            return None
        return path.is_file() and path.read_bytes() == data

    def remove(self, folder: str, name: str) -> None:
        """Remove ``folder/name`` if it exists."""
        (self.root / folder / name).unlink(missing_ok=True)
        fsync_directory(self.root / folder)

    def append_log_row(self, readings: Readings) -> Path:
        """Append one row of ``readings`` to the measurement log; return its relative path."""
        self.ensure()
        path = self.root / DATA / MEASUREMENT_LOG
        row = [
            iso_time(readings.timestamp),
            *(
                f"{v:.4f}"
                for v in (
                    readings.energy_import_kwh,
                    readings.energy_export_kwh,
                    readings.test_energy_import_kwh,
                    readings.test_energy_export_kwh,
                    readings.demand_kw,
                    readings.peak_demand.kw,
                )
            ),
            *(f"{v:.3f}" for p in readings.phases for v in (p.voltage_v, p.current_a, p.power_kw)),
            f"{readings.frequency_hz:.3f}",
            "1" if readings.test_mode else "0",
        ]
        # data/ is writable over SFTP: never append through a planted link.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
        with os.fdopen(fd, "a", encoding="ascii", newline="") as f:
            if f.tell() == 0:
                f.write(LOG_HEADER)
            f.write(",".join(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return Path(DATA, MEASUREMENT_LOG)

    def write_waveform(self, readings: Readings) -> Path:
        """Write one cycle of the three phases' voltage and current; return its relative path."""
        out = io.StringIO()
        out.write("sample,time_s," + ",".join(f"voltage_{p}_v,current_{p}_a" for p in PHASES) + "\n")
        period = 1.0 / readings.frequency_hz
        for n in range(WAVEFORM_SAMPLES_PER_CYCLE):
            angle = 2 * math.pi * n / WAVEFORM_SAMPLES_PER_CYCLE
            values = []
            for index, phase in enumerate(readings.phases):
                shifted = angle - index * 2 * math.pi / 3
                volts = phase.voltage_v * math.sqrt(2) * math.sin(shifted)
                fundamental = math.sin(shifted - math.acos(0.95))
                amps = (
                    phase.current_a * math.sqrt(2) * (fundamental + _THIRD_HARMONIC * math.sin(3 * shifted))
                )
                values += [f"{volts:.2f}", f"{amps:.3f}"]
            out.write(f"{n},{n * period / WAVEFORM_SAMPLES_PER_CYCLE:.6f}," + ",".join(values) + "\n")
        stamp = dt.datetime.fromtimestamp(readings.timestamp, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"waveform-{stamp}.csv"
        suffix = 1
        while (self.root / DATA / name).exists():
            name = f"waveform-{stamp}-{suffix}.csv"
            suffix += 1
        return self.write(DATA, name, out.getvalue().encode("ascii"))

    def clear_measurements(self) -> tuple[str, ...]:
        """Remove the measurement logs and waveforms; return their relative paths.

        Only regular files (or links, which are removed, not followed) whose
        names the meter gives its logs and waveforms are removed.
        """
        data = self.root / DATA
        doomed = sorted({*data.glob(MEASUREMENT_LOG_GLOB), *data.glob(WAVEFORM_GLOB)})
        removed = []
        for path in doomed:
            if path.is_symlink() or path.is_file():
                path.unlink()
                removed.append(f"{DATA}/{path.name}")
        if removed:
            fsync_directory(data)
        return tuple(removed)
