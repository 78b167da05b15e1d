"""The simulated site: a fixed daily load profile, integrated exactly.

Phases A and B feed loads and phase C carries a small generator, so both
billing registers advance.  Each phase's power is a base plus a daily
sinusoid whose swing is smaller than the base, so a phase never changes
direction and its energy over any span has a closed form: registers are a
pure function of the times at which they are read, whatever the reading
pattern, and tests can drive them with an injected clock.
"""

from __future__ import annotations

import math

from meterd.meter.errors import MeterValueError
from meterd.meter.model import PhaseReading
from meterd.record import record

DAY_S = 86_400.0
_OMEGA = 2 * math.pi / DAY_S
POWER_FACTOR = 0.95
NOMINAL_VOLTAGE_V = 230.0
NOMINAL_FREQUENCY_HZ = 50.0


@record
class PhaseProfile:
    """One phase's power over the day.

    Attributes:
        base_kw: Mean power magnitude.
        swing_kw: Amplitude of the daily sinusoid; below ``base_kw``.
        peak_hour: Hour of the day (UTC) at which the power is highest.
        exports: True when the phase feeds power back (a generator).

    """

    base_kw: float
    swing_kw: float
    peak_hour: float
    exports: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.swing_kw < self.base_kw:
            raise MeterValueError("must stay below base_kw so the phase never reverses", key="swing_kw")

    def _phase(self, t: float) -> float:
        return _OMEGA * (t - self.peak_hour * 3600.0)

    def power_kw(self, t: float) -> float:
        """Power magnitude at true time ``t``."""
        return self.base_kw + self.swing_kw * math.cos(self._phase(t))

    def energy_kwh(self, t0: float, t1: float) -> float:
        """Energy magnitude over ``[t0, t1]`` in true time; 0 if ``t1 <= t0``."""
        if t1 <= t0:
            return 0.0
        # Differences, not F(t1) - F(t0), keep precision at epoch-sized times.
        sines = math.sin(self._phase(t1)) - math.sin(self._phase(t0))
        kws = self.base_kw * (t1 - t0) + self.swing_kw / _OMEGA * sines
        return max(kws, 0.0) / 3600.0


@record
class LoadProfile:
    """The site's three phases.

    Attributes:
        phases: Phase A, B and C profiles.

    """

    phases: tuple[PhaseProfile, PhaseProfile, PhaseProfile]

    def energy_kwh(self, t0: float, t1: float) -> tuple[float, float]:
        """Import and export energy over ``[t0, t1]`` in true time."""
        imported = sum(p.energy_kwh(t0, t1) for p in self.phases if not p.exports)
        exported = sum(p.energy_kwh(t0, t1) for p in self.phases if p.exports)
        return imported, exported

    def import_demand_kw(self, end: float, interval_s: float) -> float:
        """Mean import power over the block ``[end - interval_s, end]``."""
        return self.energy_kwh(end - interval_s, end)[0] * 3600.0 / interval_s

    def phase_readings(self, t: float) -> tuple[PhaseReading, PhaseReading, PhaseReading]:
        """Instantaneous voltage, current and signed power of each phase."""
        readings = []
        for index, phase in enumerate(self.phases):
            # A small ripple, offset per phase, so voltages are not identical.
            volts = NOMINAL_VOLTAGE_V + 2.0 * math.sin(_OMEGA * 24 * t + index)
            kw = phase.power_kw(t)
            amps = kw * 1000.0 / (volts * POWER_FACTOR)
            readings.append(
                PhaseReading(voltage_v=volts, current_a=amps, power_kw=-kw if phase.exports else kw)
            )
        a, b, c = readings
        return a, b, c

    @staticmethod
    def frequency_hz(t: float) -> float:
        """System frequency at true time ``t``."""
        return NOMINAL_FREQUENCY_HZ + 0.02 * math.sin(_OMEGA * 96 * t)


DEFAULT_PROFILE = LoadProfile(
    phases=(
        PhaseProfile(base_kw=12.0, swing_kw=6.0, peak_hour=18.0),
        PhaseProfile(base_kw=10.0, swing_kw=4.0, peak_hour=12.0),
        PhaseProfile(base_kw=3.0, swing_kw=2.5, peak_hour=13.0, exports=True),
    )
)
"""The profile :class:`~meterd.meter.simulation.SimulatedMeter` uses unless given another."""
