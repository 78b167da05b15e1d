"""The ``[serial]`` section of ``meterd.toml``: which device, its line settings, its limits."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from meterd.configspec import Base, Key, Loader, Section
from meterd.record import record
from meterd.tomlreader import Reader

#: The ``device`` value that makes meterd create a pseudo-terminal.
PTY = "pty"
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
PARITIES = ("none", "even", "odd", "mark", "space")


def _device(device: str) -> str | None:
    return 'must be "pty" or a device path' if not device or "\x00" in device else None


def _baud(baud: int) -> str | None:
    return None if baud in BAUD_RATES else f"must be one of {', '.join(map(str, BAUD_RATES))}, not {baud}"


SERIAL = Section(
    "serial",
    "the serial console",
    (
        Key("enabled", bool, True, "run the console"),
        Key(
            "device",
            str,
            PTY,
            "`pty` (meterd makes a pseudo-terminal) or a device path",
            base=Base.CONFIG,
            check=_device,
        ),
        Key("link", Path, "serial-console", "where a made pseudo-terminal is linked", base=Base.STATE),
        Key(
            "baud",
            int,
            115200,
            "line speed of a real device",
            low=BAUD_RATES[0],
            high=BAUD_RATES[-1],
            check=_baud,
        ),
        Key("bytesize", int, 8, "data bits", low=5, high=8),
        Key("parity", str, "none", "parity", choices=PARITIES),
        Key("stopbits", int, 1, "stop bits", low=1, high=2),
        Key("max_line", int, 256, "longest input line (further characters are dropped)", low=16, high=4096),
        Key(
            "reconnect_interval",
            float,
            2.0,
            "seconds before reopening a vanished device (backing off to 8 times this)",
            low=0.05,
            high=60,
        ),
        Key("login_timeout", float, 60.0, "seconds the login prompts wait", low=1, high=600),
        Key(
            "failure_delay", float, 1.0, "seconds after a failed login before the next prompt", low=0, high=10
        ),
    ),
)


@record
class SerialConfig:
    """Serial console settings.

    Attributes:
        enabled: Whether the daemon runs the console.
        device: ``"pty"`` to create a pseudo-terminal, or the device path (``/dev/ttyS1``);
            meterd opens the device but never creates it, so a relative path is
            taken from the configuration file's directory.
        link: Where to symlink a created pty; meterd creates it, so a relative
            path is taken below the state directory (see :meth:`link_path`).
        baud: Line speed of a real device.
        bytesize: Data bits (5..8).
        parity: ``none``, ``even``, ``odd``, ``mark`` or ``space``.
        stopbits: 1 or 2.
        max_line: Longest input line; further characters are dropped.
        reconnect_interval: Seconds before the first attempt to reopen a vanished
            device; later attempts back off to eight times this.
        login_timeout: Seconds the login and password prompts wait before starting over.
        failure_delay: Seconds to wait after a failed login before the next prompt.
    """

    enabled: bool = SERIAL.default("enabled")
    device: str = SERIAL.default("device")
    link: Path = SERIAL.default("link")
    baud: int = SERIAL.default("baud")
    bytesize: int = SERIAL.default("bytesize")
    parity: str = SERIAL.default("parity")
    stopbits: int = SERIAL.default("stopbits")
    max_line: int = SERIAL.default("max_line")
    reconnect_interval: float = SERIAL.default("reconnect_interval")
    login_timeout: float = SERIAL.default("login_timeout")
    failure_delay: float = SERIAL.default("failure_delay")

    @property
    def is_pty(self) -> bool:
        """True when meterd creates the terminal itself."""
        return self.device == PTY

    def link_path(self, state_dir: Path) -> Path:
        """Return the absolute path of the pty link for the daemon's ``state_dir``."""
        return state_dir / self.link


def _device_path(reader: Reader, values: dict[str, Any], bases: Mapping[Base, Path]) -> None:
    # A word or a path, so the key names its base but the section resolves it; the
    # pty link is not resolved here: it lies below the state directory.
    del reader
    base = bases.get(Base.CONFIG)
    if values["device"] != PTY and base is not None:
        values["device"] = str(base / values["device"])


#: Reads ``[serial]``: a relative device path is taken from the configuration file's directory.
LOADER = Loader(SERIAL, SerialConfig, _device_path)
