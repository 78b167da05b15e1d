"""The ``[meter]`` section of ``meterd.toml``: which implementation of the meter the daemon builds."""

from __future__ import annotations

from meterd.configspec import Key, Loader, Section
from meterd.record import record

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


@record
class MeterSettings:
    """Which meter the daemon builds.

    Attributes:
        kind: One of :data:`KINDS`.
    """

    kind: str = METER.default("kind")


#: Reads ``[meter]`` (an absent table takes the defaults).
LOADER = Loader(METER, MeterSettings)
