"""The ``[meter]`` section of ``meterd.toml``: which implementation of the meter the daemon builds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from meterd.configspec import Base, Key, Section
from meterd.tomlreader import Reader

#: The meter implementations meterd can build (:mod:`meterd.meter.factory` builds each).
KINDS = ("simulated",)

METER = Section(
    "meter",
    "the meter meterd's actions act upon",
    (
        Key(
            "kind", str, "simulated", "the implementation: simulated (state kept in state_dir)", choices=KINDS
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class MeterSettings:
    """Which meter the daemon builds.

    Attributes:
        kind: One of :data:`KINDS`.
    """

    kind: str = "simulated"


def load(reader: Reader, bases: Mapping[Base, Path]) -> MeterSettings:
    """Read ``[meter]`` (an absent table takes the defaults)."""
    return MeterSettings(**METER.read(reader, bases))
