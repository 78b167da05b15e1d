"""The simulated meter's registers over time (registers.py, profile.py): energy, demand, test mode, the meter clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterd.meter.errors import MeterValueError
from meterd.meter.model import PeakDemand
from meterd.meter.simulation.meter import SimulatedMeter
from meterd.meter.simulation.profile import DEFAULT_PROFILE
from tests.meter.simulation.helpers import DAILY_EXPORT_KWH, DAILY_IMPORT_KWH, DAY, HOUR, START, FakeClock

# -- registers ----------------------------------------------------------------


def test_a_new_meter_starts_with_empty_registers(meter: SimulatedMeter) -> None:
    r = meter.readings()
    assert r.timestamp == START
    assert (r.energy_import_kwh, r.energy_export_kwh) == (0.0, 0.0)
    assert r.peak_demand == PeakDemand()
    assert r.test_mode is False


def test_registers_advance_with_the_injected_clock(meter: SimulatedMeter, clock: FakeClock) -> None:
    clock.advance(DAY)
    r = meter.readings()
    assert r.energy_import_kwh == pytest.approx(DAILY_IMPORT_KWH)
    assert r.energy_export_kwh == pytest.approx(DAILY_EXPORT_KWH)
    clock.advance(HOUR)
    later = meter.readings()
    assert later.energy_import_kwh > r.energy_import_kwh
    assert later.timestamp == START + DAY + HOUR


def test_registers_do_not_advance_while_the_clock_stands_still(
    meter: SimulatedMeter, clock: FakeClock
) -> None:
    clock.advance(HOUR)
    assert meter.readings() == meter.readings()


def test_instantaneous_figures_are_consistent(meter: SimulatedMeter, clock: FakeClock) -> None:
    clock.advance(5 * HOUR)
    r = meter.readings()
    a, b, c = r.phases
    assert a.power_kw > 0, "phase A feeds loads"
    assert b.power_kw > 0, "phase B feeds loads"
    assert c.power_kw < 0, "phase C carries the generator"
    for phase in r.phases:
        assert 220 < phase.voltage_v < 240
        assert phase.current_a == pytest.approx(abs(phase.power_kw) * 1000 / (phase.voltage_v * 0.95))
    assert r.total_power_kw == pytest.approx(a.power_kw + b.power_kw + c.power_kw)
    assert 49.9 < r.frequency_hz < 50.1


@settings(max_examples=50, deadline=None)
@given(steps=st.lists(st.floats(min_value=0.001, max_value=3 * DAY), min_size=1, max_size=20))
def test_registers_never_decrease_and_do_not_depend_on_when_they_are_read(
    tmp_path_factory: pytest.TempPathFactory, steps: list[float]
) -> None:
    clock = FakeClock()
    meter = SimulatedMeter(tmp_path_factory.mktemp("var"), clock)
    previous = meter.readings()
    for step in steps:
        clock.advance(step)
        current = meter.readings()
        assert current.energy_import_kwh >= previous.energy_import_kwh
        assert current.energy_export_kwh >= previous.energy_export_kwh
        assert current.peak_demand.kw >= previous.peak_demand.kw
        previous = current
    jump = FakeClock()
    once = SimulatedMeter(tmp_path_factory.mktemp("var"), jump)
    jump.now = clock.now
    assert once.readings().energy_import_kwh == pytest.approx(previous.energy_import_kwh, rel=1e-9, abs=1e-9)
    assert once.readings().energy_export_kwh == pytest.approx(previous.energy_export_kwh, rel=1e-9, abs=1e-9)
    assert once.readings().peak_demand.kw == pytest.approx(previous.peak_demand.kw)


def test_a_clock_stepping_back_never_counts_energy_twice(meter: SimulatedMeter, clock: FakeClock) -> None:
    clock.advance(2 * HOUR)
    before = meter.readings()
    clock.advance(-HOUR)
    assert meter.readings().energy_import_kwh == before.energy_import_kwh
    meter.reset_peak_demand()  # any write settles the registers at the earlier time
    clock.advance(HOUR)
    expected = before.energy_import_kwh + DEFAULT_PROFILE.energy_kwh(START + HOUR, START + 2 * HOUR)[0]
    assert meter.readings().energy_import_kwh == pytest.approx(expected)


# -- demand -------------------------------------------------------------------


def block_demand(end: float, minutes: int = 15) -> float:
    return DEFAULT_PROFILE.energy_kwh(end - minutes * 60, end)[0] * 60 / minutes


def test_demand_is_the_last_completed_block(meter: SimulatedMeter, clock: FakeClock) -> None:
    clock.advance(HOUR + 7 * 60)
    assert meter.readings().demand_kw == pytest.approx(block_demand(START + HOUR))


def test_peak_demand_tracks_the_highest_block(meter: SimulatedMeter, clock: FakeClock) -> None:
    clock.advance(DAY)
    ends = [START + 900 * k for k in range(1, 97)]
    best = max(ends, key=block_demand)
    peak = meter.readings().peak_demand
    assert peak.kw == pytest.approx(block_demand(best))
    assert peak.at == best


def test_peak_demand_reset_returns_what_it_cleared(meter: SimulatedMeter, clock: FakeClock) -> None:
    clock.advance(DAY)
    before = meter.readings().peak_demand
    clock.advance(60)
    reset = meter.reset_peak_demand()
    assert reset.previous == before
    assert reset.reset_at == clock.now
    assert meter.readings().peak_demand == PeakDemand()
    assert meter.status().last_peak_reset == clock.now
    clock.advance(HOUR)
    peak = meter.readings().peak_demand
    assert peak.kw > 0
    assert peak.at is not None
    assert peak.at > reset.reset_at


def test_a_longer_demand_interval_settles_the_old_blocks_first(
    meter: SimulatedMeter, clock: FakeClock
) -> None:
    clock.advance(HOUR)
    meter.set_dss_settings({"demand_interval_min": 60})
    assert meter.dss_settings().demand_interval_min == 60
    clock.advance(HOUR)
    assert meter.readings().demand_kw == pytest.approx(block_demand(START + 2 * HOUR, 60))


# -- test mode ----------------------------------------------------------------


def test_test_mode_keeps_energy_out_of_the_billing_registers(meter: SimulatedMeter, clock: FakeClock) -> None:
    clock.advance(HOUR)
    billing = meter.readings()
    meter.set_test_mode(True)
    assert meter.test_mode() is True
    clock.advance(2 * HOUR)
    r = meter.readings()
    assert r.test_mode is True
    assert r.energy_import_kwh == billing.energy_import_kwh
    assert r.energy_export_kwh == billing.energy_export_kwh
    assert r.peak_demand == billing.peak_demand
    expected = DEFAULT_PROFILE.energy_kwh(START + HOUR, START + 3 * HOUR)
    assert (r.test_energy_import_kwh, r.test_energy_export_kwh) == pytest.approx(expected)
    meter.set_test_mode(False)
    clock.advance(HOUR)
    after = meter.readings()
    assert after.test_mode is False
    assert after.test_energy_import_kwh == r.test_energy_import_kwh, "test registers hold outside test mode"
    assert after.energy_import_kwh == pytest.approx(
        billing.energy_import_kwh + DEFAULT_PROFILE.energy_kwh(START + 3 * HOUR, START + 4 * HOUR)[0]
    )


def test_entering_test_mode_zeroes_the_test_registers(meter: SimulatedMeter, clock: FakeClock) -> None:
    meter.set_test_mode(True)
    clock.advance(HOUR)
    meter.set_test_mode(False)
    meter.set_test_mode(True)
    assert meter.readings().test_energy_import_kwh == 0.0


def test_setting_the_same_test_mode_changes_nothing(meter: SimulatedMeter, clock: FakeClock) -> None:
    meter.set_test_mode(True)
    clock.advance(HOUR)
    meter.set_test_mode(True)
    assert meter.readings().test_energy_import_kwh > 0


def test_a_restart_leaves_test_mode(meter: SimulatedMeter, clock: FakeClock) -> None:
    meter.set_test_mode(True)
    clock.advance(60)
    status = meter.restart()
    assert status.test_mode is False
    assert status.restart_count == 1
    assert status.started_at == clock.now


# -- clock --------------------------------------------------------------------


def test_setting_the_clock_records_an_offset(meter: SimulatedMeter, clock: FakeClock) -> None:
    result = meter.set_clock(START + 90)
    assert (result.meter_time, result.offset_s) == (START + 90, 90)
    clock.advance(10)
    assert meter.clock().meter_time == START + 100
    assert meter.readings().timestamp == START + 100
    assert meter.status().clock.offset_s == 90


def test_setting_the_clock_does_not_change_the_energy(meter: SimulatedMeter, clock: FakeClock) -> None:
    clock.advance(HOUR)
    meter.set_clock(START - DAY)
    clock.advance(HOUR)
    assert meter.readings().energy_import_kwh == pytest.approx(
        DEFAULT_PROFILE.energy_kwh(START, START + 2 * HOUR)[0]
    )


@pytest.mark.parametrize("bad", [0.0, -1.0, 5e9, math.nan, math.inf])
def test_a_time_outside_the_calendar_is_refused(meter: SimulatedMeter, bad: float) -> None:
    with pytest.raises(MeterValueError, match="meter_time"):
        meter.set_clock(bad)
    assert meter.clock().offset_s == 0
