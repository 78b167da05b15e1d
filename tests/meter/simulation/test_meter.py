"""The simulated meter (meter.py) as the rest of meterd sees it: the interface, its errors, settings and ION modules."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterd.errors import MeterdError, MeterError
from meterd.meter.errors import CertificateError, FirmwareImageError, MeterStateError, MeterValueError
from meterd.meter.interface import Meter
from meterd.meter.model import PeakDemand, PhaseReading, Readings
from meterd.meter.settings import CommSettings, DssSettings, SetpointParams
from meterd.meter.simulation.meter import SimulatedMeter
from tests.meter.simulation.helpers import START

# -- the interface ------------------------------------------------------------


def test_simulated_meter_implements_the_meter_interface(meter: SimulatedMeter) -> None:
    implementation: Meter = meter  # checked statically by mypy
    members = [m for m in vars(Meter) if not m.startswith("_")]
    assert members
    for name in members:
        assert hasattr(implementation, name), name


def test_meter_errors_belong_to_the_meterd_error_root() -> None:
    for error in (MeterValueError, MeterStateError, FirmwareImageError, CertificateError):
        assert issubclass(error, MeterError)
        assert issubclass(error, MeterdError)


# -- settings -----------------------------------------------------------------


def test_comm_settings_change_and_convert_text(meter: SimulatedMeter) -> None:
    comm = meter.set_comm_settings({"modbus_unit_id": "7", "serial_baud": 9600, "serial_parity": "odd"})
    assert (comm.modbus_unit_id, comm.serial_baud, comm.serial_parity) == (7, 9600, "odd")
    assert meter.comm_settings() == comm


@pytest.mark.parametrize(
    ("setter", "key", "suggestion"),
    [
        ("comm", "modbus_unit", "modbus_unit_id"),
        ("comm", "serial_baudrate", "serial_baud"),
        ("dss", "demand_interval", "demand_interval_min"),
        ("dss", "ct_primary", "ct_primary_a"),
    ],
)
def test_an_unknown_setting_gets_a_did_you_mean(
    meter: SimulatedMeter, setter: str, key: str, suggestion: str
) -> None:
    apply = meter.set_comm_settings if setter == "comm" else meter.set_dss_settings
    with pytest.raises(MeterValueError) as caught:
        apply({key: 1})
    assert caught.value.key == key
    assert caught.value.suggestion == suggestion
    assert f'did you mean "{suggestion}"' in str(caught.value)


def test_an_unknown_setting_far_from_any_gets_no_suggestion(meter: SimulatedMeter) -> None:
    with pytest.raises(MeterValueError) as caught:
        meter.set_comm_settings({"zzzz": 1})
    assert caught.value.suggestion == ""
    assert "did you mean" not in str(caught.value)


@pytest.mark.parametrize(
    ("updates", "key"),
    [
        ({"modbus_unit_id": 0}, "modbus_unit_id"),
        ({"modbus_unit_id": 248}, "modbus_unit_id"),
        ({"modbus_unit_id": "seven"}, "modbus_unit_id"),
        ({"modbus_unit_id": 1.5}, "modbus_unit_id"),
        ({"modbus_unit_id": True}, "modbus_unit_id"),
        ({"serial_baud": 9601}, "serial_baud"),
        ({"serial_parity": "mark"}, "serial_parity"),
        ({"serial_parity": 1}, "serial_parity"),
        ({"ip_address": "300.1.1.1"}, "ip_address"),
        ({"ip_address": "::1"}, "ip_address"),
        ({"modbus_tcp_port": 70000}, "modbus_tcp_port"),
        ({"serial_stop_bits": 3}, "serial_stop_bits"),
    ],
)
def test_bad_comm_values_are_refused_and_change_nothing(
    meter: SimulatedMeter, updates: dict[str, str | int | float | bool], key: str
) -> None:
    before = meter.comm_settings()
    with pytest.raises(MeterValueError) as caught:
        meter.set_comm_settings({"serial_baud": 9600, **updates})
    assert caught.value.key == key
    assert meter.comm_settings() == before


@pytest.mark.parametrize(
    ("updates", "key"),
    [
        ({"demand_interval_min": 7}, "demand_interval_min"),
        ({"nominal_frequency_hz": 55}, "nominal_frequency_hz"),
        ({"ct_secondary_a": 2}, "ct_secondary_a"),
        ({"pt_primary_v": "nan"}, "pt_primary_v"),
        ({"pt_primary_v": 0}, "pt_primary_v"),
        ({"volts_mode": "5w"}, "volts_mode"),
    ],
)
def test_bad_dss_values_are_refused(
    meter: SimulatedMeter, updates: dict[str, str | int | float | bool], key: str
) -> None:
    with pytest.raises(MeterValueError) as caught:
        meter.set_dss_settings(updates)
    assert caught.value.key == key
    assert meter.dss_settings() == DssSettings()


def test_an_empty_change_is_refused(meter: SimulatedMeter) -> None:
    with pytest.raises(MeterValueError, match="no settings"):
        meter.set_comm_settings({})


def test_ion_module_parameters_change(meter: SimulatedMeter) -> None:
    params = meter.set_ion_module(
        "setpoint_1", {"enabled": "on", "high_limit_kw": "25.5", "low_limit_kw": 20}
    )
    assert params == SetpointParams(enabled=True, high_limit_kw=25.5, low_limit_kw=20.0)
    assert meter.ion_modules()["setpoint_1"] == params
    assert meter.ion_modules()["setpoint_2"] == SetpointParams()


def test_ion_modules_cannot_be_changed_through_the_returned_mapping(meter: SimulatedMeter) -> None:
    with pytest.raises(TypeError):
        meter.ion_modules()["setpoint_1"] = SetpointParams(enabled=True)  # type: ignore[index]


def test_an_unknown_ion_module_gets_a_did_you_mean(meter: SimulatedMeter) -> None:
    with pytest.raises(MeterValueError) as caught:
        meter.set_ion_module("setpoint1", {"enabled": True})
    assert caught.value.suggestion == "setpoint_1"
    with pytest.raises(MeterValueError) as caught:
        meter.set_ion_module("periodic_timer_1", {"period": 60})
    assert caught.value.suggestion == "period_s"


@pytest.mark.parametrize(
    ("module", "updates", "key"),
    [
        ("setpoint_1", {"low_limit_kw": 200}, "low_limit_kw"),
        ("setpoint_1", {"enabled": "maybe"}, "enabled"),
        ("periodic_timer_1", {"period_s": 0}, "period_s"),
        ("data_recorder_1", {"depth": 100_001}, "depth"),
    ],
)
def test_bad_ion_parameters_are_refused(
    meter: SimulatedMeter, module: str, updates: dict[str, str | int | float | bool], key: str
) -> None:
    before = dict(meter.ion_modules())
    with pytest.raises(MeterValueError) as caught:
        meter.set_ion_module(module, updates)
    assert caught.value.key == key
    assert dict(meter.ion_modules()) == before


@given(unit=st.integers(min_value=-1000, max_value=1000))
def test_modbus_unit_ids_outside_1_to_247_are_refused(unit: int) -> None:
    if 1 <= unit <= 247:
        assert CommSettings(modbus_unit_id=unit).modbus_unit_id == unit
    else:
        with pytest.raises(MeterValueError, match="modbus_unit_id"):
            CommSettings(modbus_unit_id=unit)


@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_readings_refuse_impossible_energies(value: float) -> None:
    phase = PhaseReading(voltage_v=230.0, current_a=1.0, power_kw=0.2)

    def make() -> Readings:
        return Readings(
            timestamp=START,
            phases=(phase, phase, phase),
            frequency_hz=50.0,
            energy_import_kwh=value,
            energy_export_kwh=0.0,
            test_energy_import_kwh=0.0,
            test_energy_export_kwh=0.0,
            demand_kw=0.0,
            peak_demand=PeakDemand(),
            test_mode=False,
        )

    if math.isfinite(value) and 0 <= value <= 1e12:
        assert make().energy_import_kwh == value
    else:
        with pytest.raises(MeterValueError, match="energy_import_kwh"):
            make()
