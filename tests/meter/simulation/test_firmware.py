"""Firmware images on the simulated meter (meterd/meter/firmware.py): install, rejection, names, the firmware area."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterd.meter.errors import FirmwareImageError
from meterd.meter.firmware import HEADER, build_image, check_image
from meterd.meter.simulation.meter import SimulatedMeter
from tests.meter.simulation.helpers import GOOD_IMAGE


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


@given(junk=st.binary(max_size=512))
def test_random_bytes_are_never_accepted_as_firmware(junk: bytes) -> None:
    with pytest.raises(FirmwareImageError):
        check_image(junk)
