"""The simulated meter: a :class:`~meterd.meter.interface.Meter` whose state persists in the state directory.

``[meter] kind = "simulated"`` selects it (:mod:`meterd.meter.factory`).  Its
registers, load profile and persisted state are its own; the rest of meterd
sees only the interface.
"""

from meterd.meter.simulation.meter import SimulatedMeter

__all__ = ["SimulatedMeter"]
