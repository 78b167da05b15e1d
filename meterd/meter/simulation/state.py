"""The simulated meter's persistent state and its JSON file.

Invariants:
    * The state is one immutable :class:`MeterState`; a change builds a new
      one, which is written before it replaces the old in memory, so memory
      never runs ahead of the disk.
    * The file is replaced atomically (:func:`~meterd.fsutil.atomic_write`).
    * A file that exists but cannot be read back exactly is an error, never a
      reason to start over: a fresh meter is created only where no state file
      exists, so a corrupt file cannot silently zero the billing registers.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import types
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from meterd.errors import MeterError
from meterd.fsutil import atomic_write
from meterd.meter.checks import check_int, check_number, check_optional_time, check_text, check_time
from meterd.meter.errors import MeterStateError
from meterd.meter.model import (
    MAX_CLOCK_OFFSET_S,
    MAX_ENERGY_KWH,
    VERSION_PATTERN,
    CertificateInfo,
    FirmwareImageInfo,
    PeakDemand,
)
from meterd.meter.settings import ION_MODULES, CommSettings, DssSettings, IonModuleParams, default_ion_modules
from meterd.record import record

FORMAT_VERSION = 1
STATE_FILE = "state.json"


@record
class MeterState:
    """Everything the simulated meter remembers across restarts.

    Attributes:
        model: Meter model name.
        serial_number: Meter serial number.
        last_update: True time up to which the registers are integrated.
        started_at: Meter time of the last (re)start.
        energy_import_kwh: Billing import register.
        energy_export_kwh: Billing export register.
        test_energy_import_kwh: Import measured in test mode.
        test_energy_export_kwh: Export measured in test mode.
        peak_demand: Highest billing block demand since the last reset.
        last_peak_reset: Meter time of the last peak demand reset.
        last_master_reset: Meter time of the last master reset.
        test_mode: Whether test mode is on.
        clock_offset_s: Meter time minus true time.
        restart_count: Restarts since commissioning.
        comm: Communication settings.
        dss: Specific setting values.
        ion: ION module parameters by module handle.
        firmware_version: Version of the running firmware.
        firmware_images: Installed firmware images, oldest first.
        certificates: Installed certificates, oldest first.

    """

    model: str
    serial_number: str
    last_update: float
    started_at: float
    energy_import_kwh: float = 0.0
    energy_export_kwh: float = 0.0
    test_energy_import_kwh: float = 0.0
    test_energy_export_kwh: float = 0.0
    peak_demand: PeakDemand = field(default_factory=PeakDemand)
    last_peak_reset: float | None = None
    last_master_reset: float | None = None
    test_mode: bool = False
    clock_offset_s: float = 0.0
    restart_count: int = 0
    comm: CommSettings = field(default_factory=CommSettings)
    dss: DssSettings = field(default_factory=DssSettings)
    ion: Mapping[str, IonModuleParams] = field(default_factory=default_ion_modules)
    firmware_version: str = "1.0.0"
    firmware_images: tuple[FirmwareImageInfo, ...] = ()
    certificates: tuple[CertificateInfo, ...] = ()

    def __post_init__(self) -> None:
        check_text("model", self.model, 64)
        check_text("serial_number", self.serial_number, 32, r"[A-Za-z0-9-]+")
        check_time("last_update", self.last_update)
        for key in (
            "energy_import_kwh",
            "energy_export_kwh",
            "test_energy_import_kwh",
            "test_energy_export_kwh",
        ):
            check_number(key, getattr(self, key), 0.0, MAX_ENERGY_KWH)
        check_optional_time("last_peak_reset", self.last_peak_reset)
        check_optional_time("last_master_reset", self.last_master_reset)
        check_number("clock_offset_s", self.clock_offset_s, -MAX_CLOCK_OFFSET_S, MAX_CLOCK_OFFSET_S)
        check_time("started_at", self.started_at)
        check_int("restart_count", self.restart_count, 0, 1 << 31)
        check_text("firmware_version", self.firmware_version, 11, VERSION_PATTERN)


def encode(state: MeterState) -> bytes:
    """Serialise a state as the JSON document stored on disk."""
    document = {"format": FORMAT_VERSION, "state": dataclasses.asdict(state)}
    return (json.dumps(document, indent=1, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def decode(raw: bytes) -> MeterState:
    """Parse and validate a stored state document.

    Raises:
        MeterError: Any way the document is not exactly a valid state.
        ValueError: The document is not JSON.

    """
    document = json.loads(raw.decode("utf-8"))
    if not isinstance(document, dict) or set(document) != {"format", "state"}:
        raise MeterError("not a meter state document")
    if type(document["format"]) is not int or document["format"] != FORMAT_VERSION:
        raise MeterError(f"unsupported state format {document['format']!r}")
    return _decode_value(MeterState, document["state"], "state")  # type: ignore[no-any-return]


def _decode_ion(value: object, path: str) -> dict[str, IonModuleParams]:
    """Decode the one mapping in the state, the ION modules by handle."""
    if not isinstance(value, dict):
        raise MeterError(f"{path}: expected an object")
    unknown = set(value) - set(ION_MODULES)
    if unknown:
        raise MeterError(f"{path}: unknown ION module {sorted(unknown)[0]!r}")
    # A module added since the file was written starts at its defaults.
    modules = default_ion_modules()
    for name, params in value.items():
        modules[name] = _decode_value(ION_MODULES[name], params, f"{path}.{name}")
    return modules


def _decode_value(target: Any, value: object, path: str) -> Any:
    """Decode ``value`` as ``target`` exactly: no missing, extra or mistyped fields."""
    origin = get_origin(target)
    if origin is collections.abc.Mapping:
        return _decode_ion(value, path)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(target) if a is not type(None)]
        if value is None and len(options) < len(get_args(target)):
            return None
        if len(options) != 1:
            raise MeterError(f"{path}: cannot decode {target}")
        return _decode_value(options[0], value, path)
    if origin is tuple:
        if not isinstance(value, list):
            raise MeterError(f"{path}: expected a list")
        item_type = get_args(target)[0]
        return tuple(_decode_value(item_type, v, f"{path}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(target) and isinstance(target, type):
        return _decode_dataclass(target, value, path)
    return _decode_scalar(target, value, path)


def _decode_scalar(target: Any, value: object, path: str) -> Any:
    # JSON has one number type: a whole float may come back as an int.
    if target is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if target in (int, str, bool) and type(value) is target:
        return value
    raise MeterError(f"{path}: expected {getattr(target, '__name__', target)}, got {value!r}")


def _decode_dataclass(target: type[Any], value: object, path: str) -> Any:
    if not isinstance(value, dict):
        raise MeterError(f"{path}: expected an object")
    hints = get_type_hints(target)
    names = {f.name for f in dataclasses.fields(target)}
    if set(value) != names:
        odd = sorted(set(value) ^ names)[0]
        raise MeterError(f"{path}: {'unknown' if odd in value else 'missing'} field {odd!r}")
    kwargs = {name: _decode_value(hints[name], v, f"{path}.{name}") for name, v in value.items()}
    try:
        return target(**kwargs)
    except MeterError as e:
        raise MeterError(f"{path}: {e}") from e


class StateStore:
    """The state file of one meter, in ``<state_dir>/meter/``.

    Args:
        directory: The meter's own directory; created on first save.

    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE

    def load(self) -> MeterState | None:
        """Read the stored state, or return None when there is none yet.

        Raises:
            MeterStateError: The file exists but is unreadable or invalid.

        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise MeterStateError(f"cannot read meter state: {e.strerror}", path=str(self.path)) from e
        try:
            return decode(raw)
        except (ValueError, MeterError) as e:
            raise MeterStateError(
                f"corrupt meter state, refusing to start over it ({e}); "
                "restore it from a backup or move it aside to commission a new meter",
                path=str(self.path),
            ) from e

    def save(self, state: MeterState) -> None:
        """Write ``state`` atomically.

        Raises:
            MeterStateError: The file could not be written.

        """
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(self.path, encode(state))
        except OSError as e:
            raise MeterStateError(f"cannot write meter state: {e.strerror or e}", path=str(self.path)) from e
