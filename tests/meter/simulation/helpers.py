"""What the simulated meter's tests share: a clock they move by hand and its times, a reopened meter, a file tree, a valid firmware image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from meterd.meter.firmware import build_image
from meterd.meter.simulation.meter import SimulatedMeter

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


def reopen(state_dir: Path, clock: Callable[[], float]) -> SimulatedMeter:
    return SimulatedMeter(state_dir, clock)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its contents."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


GOOD_IMAGE = build_image("3.0.0", b"payload" * 64)
