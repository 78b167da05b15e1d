"""The daemon builds its meter through the interface: [meter] kind selects the implementation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meterd.errors import ConfigError
from meterd.meter.config import KINDS, MeterSettings
from meterd.meter.factory import BUILDERS, build_meter
from meterd.meter.simulation import SimulatedMeter


def test_every_kind_the_configuration_accepts_can_be_built() -> None:
    assert tuple(BUILDERS) == KINDS


def test_the_default_kind_is_the_simulation(tmp_path: Path) -> None:
    meter = build_meter(MeterSettings(), tmp_path)
    assert isinstance(meter, SimulatedMeter)
    assert meter.file_area == tmp_path / "files"
    assert meter.record_interval().parent.name == "data"  # the daemon's interval tick is in the interface


def test_an_unknown_kind_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        build_meter(MeterSettings(kind="simulted"), tmp_path)
    assert caught.value.render() == (
        'meter.kind: unknown meter kind "simulted" (one of simulated); did you mean "simulated"?'
    )
    assert not any(tmp_path.iterdir())  # nothing built


def test_the_factory_loads_a_simulation_only_when_it_builds_one() -> None:
    probe = "import json, sys, meterd.meter.factory; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert not [name for name in json.loads(out.stdout) if name.startswith("meterd.meter.simulation")]
