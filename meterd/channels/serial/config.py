"""The ``[serial]`` section of ``meterd.toml``: which device, its line settings, its limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meterd.tomlreader import Reader

#: The ``device`` value that makes meterd create a pseudo-terminal.
PTY = "pty"
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
PARITIES = ("none", "even", "odd", "mark", "space")
_KEYS = (
    "enabled",
    "device",
    "link",
    "baud",
    "bytesize",
    "parity",
    "stopbits",
    "max_line",
    "reconnect_interval",
    "login_timeout",
    "failure_delay",
)


@dataclass(frozen=True, slots=True)
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

    enabled: bool = True
    device: str = PTY
    link: Path = Path("serial-console")
    baud: int = 115200
    bytesize: int = 8
    parity: str = "none"
    stopbits: int = 1
    max_line: int = 256
    reconnect_interval: float = 2.0
    login_timeout: float = 60.0
    failure_delay: float = 1.0

    @property
    def is_pty(self) -> bool:
        """True when meterd creates the terminal itself."""
        return self.device == PTY

    def link_path(self, state_dir: Path) -> Path:
        """Return the absolute path of the pty link for the daemon's ``state_dir``."""
        return state_dir / self.link


def _choice(reader: Reader, key: str, default: str, choices: tuple[str, ...]) -> str:
    value = reader.get(key, str, default)
    if value not in choices:
        reader.error(key, f'must be one of {", ".join(choices)}, not "{value}"')
        return default
    return value


def load(reader: Reader, config_dir: Path) -> SerialConfig:
    """Read the ``[serial]`` table; problems go to the reader's error list.

    Args:
        reader: The section's reader.
        config_dir: Directory of the configuration file; a relative device path
            is taken from it (the pty ``link`` is not: it lies below the state directory).

    Returns:
        The settings, with defaults where a value was missing or invalid.
    """
    reader.check_keys(_KEYS)
    d = SerialConfig()
    device = reader.get("device", str, d.device)
    if not device or "\x00" in device:
        reader.error("device", 'must be "pty" or a device path')
        device = d.device
    elif device != PTY:
        device = str(config_dir / device)
    link = reader.get("link", str, str(d.link))
    if not link or "\x00" in link:
        reader.error("link", "must be a non-empty path")
        link = str(d.link)
    baud = reader.get("baud", int, d.baud)
    if baud not in BAUD_RATES:
        reader.error("baud", f"must be one of {', '.join(map(str, BAUD_RATES))}, not {baud}")
        baud = d.baud
    stopbits = reader.get("stopbits", int, d.stopbits)
    if stopbits not in (1, 2):
        reader.error("stopbits", f"must be 1 or 2, not {stopbits}")
        stopbits = d.stopbits
    return SerialConfig(
        enabled=reader.get("enabled", bool, d.enabled),
        device=device,
        link=Path(link),
        baud=baud,
        bytesize=reader.bounded_int("bytesize", d.bytesize, 5, 8),
        parity=_choice(reader, "parity", d.parity, PARITIES),
        stopbits=stopbits,
        max_line=reader.bounded_int("max_line", d.max_line, 16, 4096),
        reconnect_interval=reader.seconds("reconnect_interval", d.reconnect_interval, 0.05, 60),
        login_timeout=reader.seconds("login_timeout", d.login_timeout, 1, 600),
        failure_delay=reader.seconds("failure_delay", d.failure_delay, 0, 10),
    )
