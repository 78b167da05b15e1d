"""The ``meterd.toml`` key and path references, rendered from the declared sections as Markdown.

Two README blocks: the key table (between :data:`BEGIN` and :data:`END`) and
the *Paths* table (between :data:`PATHS_BEGIN` and :data:`PATHS_END`: every
path key by the directory a relative value is taken from, and what meterd
keeps below ``state_dir`` under fixed names,
:data:`~meterd.statedir.FIXED`).  ``python -m meterd.config_reference``
prints both; ``--update README.md`` replaces the README's copies, and
``--check README.md`` exits 1 if either is stale.  A test keeps the README's
copies equal to the rendering, so a key declared in a section is documented
in the same change.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from meterd import mdblock
from meterd.channels.modbus.config import MODBUS, TLS
from meterd.channels.panel.config import PANEL
from meterd.channels.serial.config import SERIAL
from meterd.channels.ssh.config import SSH
from meterd.config import DAEMON, SECTIONS
from meterd.configspec import Base, Key, Section
from meterd.directory.radius_config import RADIUS
from meterd.directory.settings import DIRECTORY, LDAP
from meterd.meter.config import METER
from meterd.metrics.config import METRICS
from meterd.seclog.settings import FORWARD, SECURITY_LOG
from meterd.statedir import FIXED

BEGIN = "<!-- config-keys:begin -->"
END = "<!-- config-keys:end -->"
PATHS_BEGIN = "<!-- config-paths:begin -->"
PATHS_END = "<!-- config-paths:end -->"

#: The sections the reference lists, in file order.
DECLARED: tuple[Section, ...] = (
    DAEMON,
    SECURITY_LOG,
    FORWARD,
    METER,
    SSH,
    SERIAL,
    PANEL,
    MODBUS,
    TLS,
    METRICS,
    DIRECTORY,
    LDAP,
    RADIUS,
)

_KINDS = {bool: "true/false", int: "integer", float: "seconds", str: "string", list: "list", Path: "path"}
_BASES = {Base.CONFIG: "relative to the configuration file", Base.STATE: "below `state_dir`"}
_WHERE = {
    Base.CONFIG: "the configuration file's directory: what meterd only reads",
    Base.STATE: "`state_dir`: what meterd creates or writes",
}


def _kind(key: Key) -> str:
    if key.kind is tuple:
        return "list of paths" if key.base is not None else "list of strings"
    return _KINDS[key.kind]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _default(key: Key) -> str:
    value: Any = key.default
    if value in ("", ()):
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if key.octal:
        return f"`{value:#o}`"
    if isinstance(value, float):
        return f"`{_number(value)}`"
    if isinstance(value, tuple):
        return f"`[{', '.join(str(v) for v in value)}]`"
    return f"`{value}`" if not isinstance(value, str) else f'`"{value}"`'


def _allowed(key: Key) -> str:
    if key.choices:
        return ", ".join(f"`{c}`" for c in key.choices)
    if key.low is not None and key.high is not None:
        if key.octal:
            return f"`{int(key.low):#o}` to `{int(key.high):#o}`"
        return f"{_number(key.low)} to {_number(key.high)}"
    if key.base is not None:
        return _BASES[key.base]
    return ""


def markdown_table(sections: Iterable[Section] = DECLARED) -> str:
    """Return every declared key as a Markdown table: key, type, default, allowed values, meaning."""
    lines = ["| key | type | default | allowed | what it sets |", "|---|---|---|---|---|"]
    for section in sections:
        for key in section.keys:
            row = (f"`[{section.name}] {key.name}`", _kind(key), _default(key), _allowed(key), key.doc)
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines) + "\n"


def _path_key(key: Key) -> str:
    return f"`{key.name}` (default `{key.default}`)" if key.default not in ("", ()) else f"`{key.name}`"


def paths_table(sections: Iterable[Section] = DECLARED) -> str:
    """Return every path key by the directory a relative value is taken from, then the fixed names."""
    sections = tuple(sections)
    lines = ["| relative to | paths |", "|---|---|"]
    for base in Base:
        groups = []
        for section in sections:
            keys = [_path_key(key) for key in section.keys if key.base is base]
            if keys:
                groups.append(f"`[{section.name}]` " + ", ".join(keys))
        lines.append(f"| {_WHERE[base]} | {'; '.join(groups)} |")
    fixed = "; ".join(f"`{path.shown}`: {path.doc}" for path in FIXED)
    lines.append(f"| `state_dir`, under fixed names (no key moves them) | {fixed} |")
    return "\n".join(lines) + "\n"


def undeclared() -> tuple[str, ...]:
    """The top-level tables whose keys the reference does not list yet (read by their own loaders)."""
    declared = {section.name for section in DECLARED}
    return tuple(name for name in SECTIONS if name not in declared)


def embedded(text: str) -> str:
    """Return the table currently between the markers of ``text``.

    Raises:
        ReferenceError: The markers are missing, repeated or out of order.
    """
    return mdblock.embedded(text, BEGIN, END)


def updated(text: str) -> str:
    """Return ``text`` with the block between the markers replaced by the current table.

    Raises:
        ReferenceError: The markers are missing, repeated or out of order.
    """
    return mdblock.replaced(text, BEGIN, END, markdown_table())


def main(argv: Sequence[str] | None = None) -> int:
    """Print the tables, or check or update a README's copies; 0 ok, 1 stale, 2 bad input."""
    return mdblock.generator_main(
        argv,
        prog="python -m meterd.config_reference",
        doc=__doc__,
        blocks=(
            mdblock.Block("the configuration key table", BEGIN, END, markdown_table),
            mdblock.Block("the configuration paths table", PATHS_BEGIN, PATHS_END, paths_table),
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
