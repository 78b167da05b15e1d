"""The simulated meter's data files (meterd/meter/files.py): measurement log, waveforms, master reset."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from meterd.meter.errors import MeterStateError
from meterd.meter.model import PeakDemand
from meterd.meter.simulation.meter import SimulatedMeter
from tests.certs import make_certificate, pem_of
from tests.meter.simulation.helpers import DAY, GOOD_IMAGE, HOUR, START, FakeClock, tree


def test_the_measurement_log_is_never_written_through_a_link(meter: SimulatedMeter, tmp_path: Path) -> None:
    victim = tmp_path / "security.log"
    victim.write_bytes(b"records\n")
    (meter.file_area / "data" / "measurements.csv").symlink_to(victim)
    with pytest.raises(MeterStateError, match="measurement log"):
        meter.record_interval()
    assert victim.read_bytes() == b"records\n"
    meter.master_reset()
    assert victim.read_bytes() == b"records\n"
    assert not (meter.file_area / "data" / "measurements.csv").is_symlink()


def test_the_measurement_log_and_waveforms_are_written_to_data(
    meter: SimulatedMeter, clock: FakeClock
) -> None:
    clock.advance(900)
    assert meter.record_interval() == Path("data/measurements.csv")
    meter.set_test_mode(True)
    clock.advance(900)
    meter.record_interval()
    with (meter.file_area / "data" / "measurements.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["timestamp"] for r in rows] == ["2027-01-15T08:15:00Z", "2027-01-15T08:30:00Z"]
    assert [r["test_mode"] for r in rows] == ["0", "1"]
    assert float(rows[0]["energy_import_kwh"]) > 0
    first = meter.capture_waveform()
    second = meter.capture_waveform()
    assert first != second
    with (meter.file_area / first).open(newline="") as f:
        samples = list(csv.DictReader(f))
    assert len(samples) == 64
    peak_volts = max(float(s["voltage_a_v"]) for s in samples)
    assert peak_volts == pytest.approx(meter.readings().phases[0].voltage_v * math.sqrt(2), rel=0.01)


def test_master_reset_clears_energy_demand_logs_and_waveforms(
    meter: SimulatedMeter, clock: FakeClock, state_dir: Path
) -> None:
    clock.advance(DAY)
    meter.record_interval()
    meter.capture_waveform()
    meter.set_test_mode(True)
    clock.advance(HOUR)
    meter.set_test_mode(False)
    before = meter.readings()
    report = meter.master_reset()
    assert report.at == clock.now
    assert report.energy_import_kwh == before.energy_import_kwh
    assert report.energy_export_kwh == before.energy_export_kwh
    assert report.peak_demand == before.peak_demand
    assert sorted(report.removed_files)[0] == "data/measurements.csv"
    assert len(report.removed_files) == 2
    after = meter.readings()
    assert (after.energy_import_kwh, after.energy_export_kwh) == (0.0, 0.0)
    assert (after.test_energy_import_kwh, after.test_energy_export_kwh) == (0.0, 0.0)
    assert after.demand_kw == 0.0
    assert after.peak_demand == PeakDemand()
    assert meter.status().last_master_reset == clock.now
    assert list((state_dir / "files" / "data").iterdir()) == []
    clock.advance(HOUR)
    assert meter.readings().demand_kw > 0
    assert meter.readings().peak_demand.kw > 0


def test_master_reset_leaves_everything_else_alone(
    meter: SimulatedMeter, clock: FakeClock, state_dir: Path
) -> None:
    security_log = state_dir / "security" / "security.log"
    security_log.parent.mkdir(parents=True)
    security_log.write_bytes(b"record 1\nrecord 2\n")
    (state_dir / "files" / "data" / "site-notes.txt").write_bytes(b"keep me")
    meter.install_firmware(GOOD_IMAGE, "update.fw")
    cert = meter.install_certificate(pem_of(make_certificate()))
    meter.set_comm_settings({"modbus_unit_id": 9})
    meter.set_dss_settings({"demand_interval_min": 30})
    meter.set_ion_module("setpoint_2", {"enabled": True})
    meter.set_clock(START + 42)
    clock.advance(DAY)
    meter.record_interval()
    untouched = {
        k: v for k, v in tree(state_dir).items() if not k.startswith(("meter/", "files/data/measure"))
    }
    meter.master_reset()
    assert {k: v for k, v in tree(state_dir).items() if not k.startswith("meter/")} == untouched
    assert meter.comm_settings().modbus_unit_id == 9
    assert meter.dss_settings().demand_interval_min == 30
    assert meter.ion_modules()["setpoint_2"].enabled is True  # type: ignore[union-attr]
    assert meter.firmware().version == "3.0.0"
    assert meter.certificates() == (cert,)
    assert meter.clock().offset_s == 42
