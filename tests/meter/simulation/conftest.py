"""Fixtures of the simulated meter's tests: a meter in a fresh state directory, on a clock the test moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterd.meter.simulation.meter import SimulatedMeter
from tests.meter.simulation.helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def meter(state_dir: Path, clock: FakeClock) -> SimulatedMeter:
    return SimulatedMeter(state_dir, clock)
