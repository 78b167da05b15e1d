"""How the simulated meter's registers advance from one time to another.

Pure functions of a :class:`~meterd.meter.simulation.state.MeterState`, a true time and a
:class:`~meterd.meter.simulation.profile.LoadProfile`; no I/O.

Demand is block demand: the mean import power over each demand interval,
blocks ending on multiples of the interval on the meter's clock.  The peak is
the highest block that completed while test mode was off.
"""

from __future__ import annotations

import dataclasses
import math

from meterd.meter.model import PeakDemand
from meterd.meter.simulation.profile import DAY_S, LoadProfile
from meterd.meter.simulation.state import MeterState


def meter_time(state: MeterState, now: float) -> float:
    """Return the meter clock's reading at true time ``now``."""
    return now + state.clock_offset_s


def interval_s(state: MeterState) -> float:
    """Return the demand interval in seconds."""
    return state.dss.demand_interval_min * 60.0


def last_block_end(state: MeterState, now: float) -> float:
    """Meter time at which the most recent completed demand block ended."""
    step = interval_s(state)
    return math.floor(meter_time(state, now) / step) * step


def demand_kw(state: MeterState, now: float, profile: LoadProfile) -> float:
    """Import demand of the last completed block; 0.0 if it began before a master reset."""
    end = last_block_end(state, now)
    step = interval_s(state)
    if state.last_master_reset is not None and end - step < state.last_master_reset:
        return 0.0
    return profile.import_demand_kw(end - state.clock_offset_s, step)


def _peak_over(state: MeterState, start: float, now: float, profile: LoadProfile) -> PeakDemand:
    """Return the peak including the blocks that ended in true time ``(start, now]``."""
    step = interval_s(state)
    offset = state.clock_offset_s
    first = (math.floor((start + offset) / step) + 1) * step
    last = last_block_end(state, now)
    # The profile repeats daily and intervals divide the day, so a day of
    # blocks holds every value a longer span could; scanning more is waste.
    first = max(first, last - DAY_S + step)
    peak = state.peak_demand
    end = first
    reset = state.last_master_reset
    while end <= last:
        kw = profile.import_demand_kw(end - offset, step)
        # A block that began before a master reset measured cleared energy.
        if (reset is None or end - step >= reset) and kw > peak.kw:
            peak = PeakDemand(kw=kw, at=end)
        end += step
    return peak


def advance(state: MeterState, now: float, profile: LoadProfile) -> MeterState:
    """Integrate the registers from ``state.last_update`` to true time ``now``.

    Energy measured in test mode goes to the test registers; otherwise to the
    billing registers, and completed blocks update the peak.  If the clock
    went backwards, the registers hold and integration restarts from ``now``,
    so no energy is ever counted twice.
    """
    if now <= state.last_update:
        return state if now == state.last_update else dataclasses.replace(state, last_update=now)
    imported, exported = profile.energy_kwh(state.last_update, now)
    if state.test_mode:
        return dataclasses.replace(
            state,
            last_update=now,
            test_energy_import_kwh=state.test_energy_import_kwh + imported,
            test_energy_export_kwh=state.test_energy_export_kwh + exported,
        )
    return dataclasses.replace(
        state,
        last_update=now,
        energy_import_kwh=state.energy_import_kwh + imported,
        energy_export_kwh=state.energy_export_kwh + exported,
        peak_demand=_peak_over(state, state.last_update, now, profile),
    )
