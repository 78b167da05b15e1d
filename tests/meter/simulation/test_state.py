"""The simulated meter's persisted state (state.py): restarts, the state file, refusal of a damaged one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from meterd.meter.errors import MeterStateError, MeterValueError
from meterd.meter.simulation.meter import SimulatedMeter
from meterd.meter.simulation.profile import DEFAULT_PROFILE
from tests.certs import make_certificate, pem_of
from tests.meter.simulation.helpers import DAY, GOOD_IMAGE, HOUR, START, FakeClock, reopen


def test_state_survives_a_restart_of_the_controller(
    meter: SimulatedMeter, clock: FakeClock, state_dir: Path
) -> None:
    clock.advance(DAY)
    meter.set_comm_settings({"serial_baud": 38400})
    meter.set_ion_module("data_recorder_1", {"depth": 100})
    meter.set_clock(clock.now + 5)
    meter.install_firmware(GOOD_IMAGE, "update.fw")
    cert = meter.install_certificate(pem_of(make_certificate()))
    meter.set_test_mode(True)
    before = meter.readings()
    again = reopen(state_dir, clock)
    assert again.readings() == before
    assert again.comm_settings() == meter.comm_settings()
    assert again.ion_modules() == meter.ion_modules()
    assert again.firmware() == meter.firmware()
    assert again.certificates() == (cert,)
    assert again.clock() == meter.clock()


def test_the_meter_keeps_measuring_while_the_controller_is_down(
    meter: SimulatedMeter, clock: FakeClock, state_dir: Path
) -> None:
    clock.advance(HOUR)
    meter.readings()
    clock.advance(DAY)
    again = reopen(state_dir, clock)
    assert again.readings().energy_import_kwh == pytest.approx(
        DEFAULT_PROFILE.energy_kwh(START, START + DAY + HOUR)[0]
    )
    assert again.status().started_at == clock.now


def test_the_state_file_is_json_and_writes_leave_no_temporary_files(
    meter: SimulatedMeter, state_dir: Path
) -> None:
    meter.set_comm_settings({"modbus_unit_id": 3})
    files = sorted(p.name for p in (state_dir / "meter").iterdir())
    assert files == ["state.json"]
    document = json.loads((state_dir / "meter" / "state.json").read_text())
    assert document["format"] == 1
    assert document["state"]["comm"]["modbus_unit_id"] == 3
    assert (state_dir / "meter" / "state.json").stat().st_mode & 0o077 == 0


def stored(state_dir: Path) -> dict[str, object]:
    return json.loads((state_dir / "meter" / "state.json").read_text())  # type: ignore[no-any-return]


def rewrite(state_dir: Path, change: Callable[[dict[str, object]], None]) -> None:
    document = stored(state_dir)
    change(document["state"])  # type: ignore[arg-type]
    (state_dir / "meter" / "state.json").write_text(json.dumps(document))


def _set(key: str, value: object) -> Callable[[dict[str, object]], None]:
    return lambda state: state.__setitem__(key, value)


def _drop(key: str) -> Callable[[dict[str, object]], None]:
    return lambda state: state.__delitem__(key)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("energy_import_kwh", -1.0), "energy_import_kwh"),
        (_set("energy_import_kwh", "12"), "energy_import_kwh"),
        (_set("test_mode", 1), "test_mode"),
        (_set("extra", 1), "unknown field 'extra'"),
        (_drop("dss"), "missing field 'dss'"),
        (_set("comm", {"modbus_unit_id": 1}), "missing field"),
        (_set("ion", {"setpoint_9": {}}), "setpoint_9"),
        (_set("peak_demand", {"kw": 5.0, "at": "yesterday"}), "peak_demand"),
        (_set("certificates", [{"fingerprint": "xyz"}]), "certificates"),
    ],
)
def test_a_corrupt_state_file_is_an_error_and_is_not_replaced(
    meter: SimulatedMeter,
    clock: FakeClock,
    state_dir: Path,
    change: Callable[[dict[str, object]], None],
    message: str,
) -> None:
    clock.advance(HOUR)
    meter.reset_peak_demand()
    rewrite(state_dir, change)
    damaged = (state_dir / "meter" / "state.json").read_bytes()
    with pytest.raises(MeterStateError, match="corrupt meter state") as caught:
        reopen(state_dir, clock)
    assert message in str(caught.value)
    assert str(state_dir / "meter" / "state.json") in str(caught.value)
    assert (state_dir / "meter" / "state.json").read_bytes() == damaged


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"\xff\xfe", b"[]", b'{"format": 2, "state": {}}', b'{"format": 1}', b"NaN"],
)
def test_an_unparseable_state_file_is_an_error_and_is_not_replaced(
    meter: SimulatedMeter, clock: FakeClock, state_dir: Path, content: bytes
) -> None:
    path = state_dir / "meter" / "state.json"
    path.write_bytes(content)
    with pytest.raises(MeterStateError, match="corrupt meter state"):
        reopen(state_dir, clock)
    assert path.read_bytes() == content


def test_nan_in_the_state_file_is_refused(meter: SimulatedMeter, clock: FakeClock, state_dir: Path) -> None:
    path = state_dir / "meter" / "state.json"
    path.write_text(path.read_text().replace('"clock_offset_s": 0.0', '"clock_offset_s": NaN'))
    with pytest.raises(MeterStateError, match="clock_offset_s"):
        reopen(state_dir, clock)


def test_an_unreadable_state_file_is_an_error(
    meter: SimulatedMeter, clock: FakeClock, state_dir: Path
) -> None:
    path = state_dir / "meter" / "state.json"
    path.unlink()
    path.mkdir()
    with pytest.raises(MeterStateError, match="cannot read"):
        reopen(state_dir, clock)


def test_a_clock_outside_the_calendar_is_refused(state_dir: Path) -> None:
    with pytest.raises(MeterValueError, match="clock"):
        SimulatedMeter(state_dir, lambda: 0.0)
    assert not (state_dir / "meter" / "state.json").exists()
