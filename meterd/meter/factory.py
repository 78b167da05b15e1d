"""Build the meter ``[meter] kind`` names, typed as the :class:`~meterd.meter.interface.Meter` interface.

The daemon knows meters only through this function: an implementation is
imported when it is built, so a meter the configuration does not select is
never loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from meterd.errors import ConfigError
from meterd.meter.config import KINDS, MeterSettings
from meterd.meter.interface import Meter
from meterd.tomlreader import suggest


def _simulated(state_dir: Path) -> Meter:
    from meterd.meter.simulation import SimulatedMeter  # noqa: PLC0415 - built only when selected

    return SimulatedMeter(state_dir)


#: How each kind of :data:`~meterd.meter.config.KINDS` is built from the state directory.
BUILDERS: dict[str, Callable[[Path], Meter]] = {"simulated": _simulated}


def build_meter(settings: MeterSettings, state_dir: Path) -> Meter:
    """Build the meter ``settings`` select, its state kept below ``state_dir``.

    Raises:
        ConfigError: ``settings.kind`` is no kind meterd can build (the
            configuration loader refuses such a file first).
    """
    builder = BUILDERS.get(settings.kind)
    if builder is None:
        raise ConfigError(
            f'unknown meter kind "{settings.kind}" (one of {", ".join(KINDS)})',
            key_path="meter.kind",
            suggestion=suggest(settings.kind, KINDS),
        )
    return builder(state_dir)
