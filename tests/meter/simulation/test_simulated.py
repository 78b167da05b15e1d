"""Tests of the simulated meter: registers, demand, test mode, settings, files, persistence."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from meterd.errors import MeterdError, MeterError
from meterd.meter.der import read_certificate
from meterd.meter.errors import CertificateError, FirmwareImageError, MeterStateError, MeterValueError
from meterd.meter.firmware import HEADER, build_image, check_image
from meterd.meter.interface import Meter
from meterd.meter.model import PeakDemand, PhaseReading, Readings
from meterd.meter.settings import CommSettings, DssSettings, SetpointParams
from meterd.meter.simulation.meter import MAX_CERTIFICATES, SimulatedMeter
from meterd.meter.simulation.profile import DEFAULT_PROFILE
from tests.certs import make_certificate, pem_of

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z, on a 15-minute boundary
DAY = 86_400.0
HOUR = 3_600.0
# Daily energy of the default profile: the sinusoids integrate to zero over a day.
DAILY_IMPORT_KWH = (12.0 + 10.0) * 24
DAILY_EXPORT_KWH = 3.0 * 24


@dataclass
class FakeClock:
    """A clock the test moves by hand."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def meter(state_dir: Path, clock: FakeClock) -> SimulatedMeter:
    return SimulatedMeter(state_dir, clock)


def reopen(state_dir: Path, clock: Callable[[], float]) -> SimulatedMeter:
    return SimulatedMeter(state_dir, clock)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its contents."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


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


# -- firmware -----------------------------------------------------------------


def test_a_valid_firmware_image_is_installed(meter: SimulatedMeter) -> None:
    image = build_image("2.4.1", b"\x7fELF firmware payload" * 100)
    info = meter.install_firmware(image, "meter-2.4.1.fw")
    assert info.version == "2.4.1"
    assert info.sha256 == hashlib.sha256(image).hexdigest()
    assert info.size_bytes == len(image)
    assert (meter.file_area / "firmware" / "meter-2.4.1.fw").read_bytes() == image
    assert meter.firmware().version == "2.4.1"
    assert meter.firmware().images == (info,)
    assert meter.status().firmware_version == "2.4.1"


def corrupt(image: bytes, index: int) -> bytes:
    return image[:index] + bytes([image[index] ^ 0x01]) + image[index + 1 :]


GOOD_IMAGE = build_image("3.0.0", b"payload" * 64)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"", "too short"),
        (b"garbage" * 100, "bad magic"),
        (corrupt(GOOD_IMAGE, len(GOOD_IMAGE) - 1), "digest mismatch"),
        (corrupt(GOOD_IMAGE, HEADER.size - 1), "digest mismatch"),
        (GOOD_IMAGE[:-1], "truncated"),
        (GOOD_IMAGE + b"\0", "truncated or padded"),
        (GOOD_IMAGE[:8] + b"3.0.x".ljust(16, b"\0") + GOOD_IMAGE[24:], "malformed version"),
        (GOOD_IMAGE[: HEADER.size], "too short"),
    ],
)
def test_a_bad_firmware_image_is_rejected(meter: SimulatedMeter, image: bytes, message: str) -> None:
    with pytest.raises(FirmwareImageError, match=message):
        meter.install_firmware(image, "update.fw")
    assert list((meter.file_area / "firmware").iterdir()) == []
    assert meter.firmware().version == "1.0.0"


@pytest.mark.parametrize("name", ["", "../escape.fw", "a/b.fw", ".hidden", "x..y", "name with space", "é.fw"])
def test_an_unsafe_firmware_name_is_rejected(meter: SimulatedMeter, name: str) -> None:
    with pytest.raises(FirmwareImageError, match="name"):
        meter.install_firmware(GOOD_IMAGE, name)
    assert list((meter.file_area / "firmware").iterdir()) == []


def test_a_firmware_name_cannot_be_reused(meter: SimulatedMeter) -> None:
    meter.install_firmware(GOOD_IMAGE, "update.fw")
    with pytest.raises(FirmwareImageError, match="already installed"):
        meter.install_firmware(build_image("3.0.1", b"other"), "update.fw")
    assert meter.firmware().version == "3.0.0"


def test_an_image_uploaded_into_the_firmware_area_is_adopted(meter: SimulatedMeter) -> None:
    (meter.file_area / "firmware" / "update.fw").write_bytes(GOOD_IMAGE)
    assert meter.install_firmware(GOOD_IMAGE, "update.fw").version == "3.0.0"


def test_a_different_file_in_the_firmware_area_is_not_overwritten(
    meter: SimulatedMeter, tmp_path: Path
) -> None:
    (meter.file_area / "firmware" / "update.fw").write_bytes(b"someone else's file")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(GOOD_IMAGE)
    (meter.file_area / "firmware" / "linked.fw").symlink_to(outside)
    for name in ("update.fw", "linked.fw"):
        with pytest.raises(FirmwareImageError, match="different file"):
            meter.install_firmware(GOOD_IMAGE, name)
    assert (meter.file_area / "firmware" / "update.fw").read_bytes() == b"someone else's file"
    assert meter.firmware().images == ()


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


@given(junk=st.binary(max_size=512))
def test_random_bytes_are_never_accepted_as_firmware(junk: bytes) -> None:
    with pytest.raises(FirmwareImageError):
        check_image(junk)


# -- certificates -------------------------------------------------------------


def test_a_certificate_is_installed_and_described(meter: SimulatedMeter, clock: FakeClock) -> None:
    cert = make_certificate()
    info = meter.install_certificate(pem_of(cert))
    assert info.fingerprint == cert.fingerprint(hashes.SHA256()).hex()
    assert info.subject == cert.subject.rfc4514_string() == "CN=scada-1,O=Utility,C=DE"
    assert info.issuer == cert.issuer.rfc4514_string()
    assert info.not_before == cert.not_valid_before_utc.timestamp()
    assert info.not_after == cert.not_valid_after_utc.timestamp()
    assert info.installed_at == clock.now
    stored = meter.file_area / "certs" / f"{info.fingerprint}.pem"
    assert x509.load_pem_x509_certificate(stored.read_bytes()) == cert
    assert meter.certificates() == (info,)
    assert meter.status().certificate_count == 1


def test_names_with_special_characters_render_as_rfc_4514(meter: SimulatedMeter) -> None:
    cert = make_certificate(common_name='Meter, "North" + 1', organisation="#Grid Ops ")
    assert meter.install_certificate(pem_of(cert)).subject == cert.subject.rfc4514_string()


def test_validity_past_2049_is_read_from_generalized_time(meter: SimulatedMeter) -> None:
    end = dt.datetime(2061, 6, 30, 12, 0, tzinfo=dt.UTC)
    info = meter.install_certificate(pem_of(make_certificate(not_after=end)))
    assert info.not_after == end.timestamp()


def test_a_certificate_cannot_be_installed_twice(meter: SimulatedMeter) -> None:
    pem = pem_of(make_certificate())
    meter.install_certificate(pem)
    with pytest.raises(CertificateError, match="already installed"):
        meter.install_certificate(pem)
    assert len(meter.certificates()) == 1


def test_certificates_are_listed_oldest_first_and_removed_by_fingerprint_prefix(
    meter: SimulatedMeter,
) -> None:
    first = meter.install_certificate(pem_of(make_certificate("one")))
    second = meter.install_certificate(pem_of(make_certificate("two")))
    assert meter.certificates() == (first, second)
    removed = meter.remove_certificate(first.fingerprint[:12].upper())
    assert removed == first
    assert meter.certificates() == (second,)
    assert not (meter.file_area / "certs" / first.file_name).exists()
    assert (meter.file_area / "certs" / second.file_name).exists()


def test_removing_a_certificate_needs_an_unambiguous_fingerprint(meter: SimulatedMeter) -> None:
    info = meter.install_certificate(pem_of(make_certificate()))
    with pytest.raises(CertificateError, match="at least 8"):
        meter.remove_certificate(info.fingerprint[:4])
    with pytest.raises(CertificateError, match="no installed certificate"):
        meter.remove_certificate("00" * 32 if not info.fingerprint.startswith("00") else "ff" * 32)
    assert meter.certificates() == (info,)


def test_the_certificate_store_is_bounded(meter: SimulatedMeter) -> None:
    for n in range(MAX_CERTIFICATES):
        meter.install_certificate(pem_of(make_certificate(f"c{n}")))
    with pytest.raises(CertificateError, match="at most"):
        meter.install_certificate(pem_of(make_certificate("one-too-many")))


def private_key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def bad_certificates() -> Iterator[tuple[bytes, str]]:
    good = pem_of(make_certificate())
    der = make_certificate().public_bytes(serialization.Encoding.DER)
    yield b"not a certificate", "no PEM block"
    yield private_key_pem(), "private key"
    yield good + pem_of(make_certificate("second")), "exactly one"
    yield good.replace(b"CERTIFICATE", b"PUBLIC KEY"), "found PUBLIC KEY"
    yield good.replace(b"MII", b"M!I", 1), "base64"
    yield b"junk before\n" + good, "outside"
    yield "\N{BLACK STAR}".encode() + good, "not PEM text"
    for broken in (der[:-10], der + b"\0", b"\x30\x03\x02\x01\x01", b"\x31" + der[1:]):
        body = base64.encodebytes(broken)
        yield b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n", "certificate"


@pytest.mark.parametrize(("pem", "message"), list(bad_certificates()))
def test_a_malformed_certificate_is_rejected(meter: SimulatedMeter, pem: bytes, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        meter.install_certificate(pem)
    assert meter.certificates() == ()
    assert list((meter.file_area / "certs").iterdir()) == []


@settings(max_examples=200)
@given(junk=st.binary(max_size=300))
def test_random_der_is_rejected_cleanly(junk: bytes) -> None:
    with pytest.raises(CertificateError):
        read_certificate(junk)


# -- measurement files and master reset ---------------------------------------


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


# -- persistence --------------------------------------------------------------


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


VALID_DER = make_certificate().public_bytes(serialization.Encoding.DER)


@settings(max_examples=300)
@given(position=st.integers(min_value=0, max_value=len(VALID_DER) - 1), value=st.integers(0, 255))
def test_a_damaged_certificate_is_read_or_rejected_never_crashes(position: int, value: int) -> None:
    damaged = VALID_DER[:position] + bytes([value]) + VALID_DER[position + 1 :]
    try:
        fields = read_certificate(damaged)
    except CertificateError:
        return
    assert isinstance(fields.subject, str)
