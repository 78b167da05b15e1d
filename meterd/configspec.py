"""Declared configuration: each section of ``meterd.toml`` states its keys once.

A :class:`Section` lists its :class:`Key` s (name, type, default, bounds or
choices, and for a path the directory a relative one is taken from); reading
the section, its defaults, its unknown-key errors (with a did-you-mean) and the
README's key and path references (:mod:`meterd.config_reference`) all come from
that one declaration.  A section's settings object is built by one
:class:`Loader` (read every key, then the section's own cross-key checks), and
its fields take their defaults from the declaration (:meth:`Section.default`),
so a default is written nowhere else.  A leaf: it imports only the TOML reader
and the errors.

Invariant: a value that is missing takes the declared default; a value that is
wrong is reported with its key path and the default is used in its place, so
every problem in a file is reported at once (the caller then refuses the file).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from meterd.record import record
from meterd.tomlreader import Reader, suggest


class Base(enum.Enum):
    """Where a relative path is taken from (see the README's *Paths*)."""

    #: The configuration file's directory: files meterd only reads.
    CONFIG = "configuration file"
    #: The state directory: everything meterd creates or writes.
    STATE = "state_dir"


#: An extra check of a value of the right type and bounds: the problem (and a
#: suggestion), or None.
Check = Callable[[Any], str | tuple[str, str] | None]
#: Reads a key itself, given its declaration and the values of the keys before it (a
#: list checked item by item, a limit bounded by another): the value, its problems
#: recorded on the reader.
Custom = Callable[[Reader, "Key", Mapping[str, Any]], Any]
#: A section's own checks of its values together, once each key is read alone: records
#: problems on the reader, and may replace a value or add a sub-table's settings.
Finish = Callable[[Reader, dict[str, Any], Mapping[Base, Path]], None]

T = TypeVar("T")


@record
class Key:
    """One key of a section.

    Attributes:
        name: The key as written in the file.
        kind: ``bool``, ``int``, ``float`` (seconds, integer or decimal), ``str``,
            ``tuple`` (a list of strings, or of paths when it names a base),
            ``list`` (a list checked by ``check``) or ``Path``.
        default: The value when the key is absent (a path's default is its text;
            ``""`` means no path).
        doc: One line for the reference.
        low: Smallest value (``int`` and ``float``).
        high: Largest value (``int`` and ``float``).
        choices: The only values a ``str`` may take.
        base: For a ``Path`` (or a ``tuple`` of them): the directory a relative path is
            taken from.  A ``str`` that is either a word or a path (the serial
            console's ``pty``) names it too; its section resolves it.
        check: An extra check (an IP address, a non-empty path).
        octal: Shown in octal in the reference (permission bits).
        custom: Reads the value itself instead of the checks above (which
            then only document it).
    """

    name: str
    kind: type
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    base: Base | None = None
    check: Check | None = None
    octal: bool = False
    custom: Custom | None = None

    def __post_init__(self) -> None:
        paths = self.kind in (Path, tuple, str)
        if (self.kind is Path and self.base is None) or (self.base is not None and not paths):
            raise ValueError(
                f"{self.name}: a path, and only a path (or a string that may be one), names its base"
            )
        if self.kind in (int, float) and (self.low is None or self.high is None):
            raise ValueError(f"{self.name}: a number needs its bounds")

    def read(self, reader: Reader, bases: Mapping[Base, Path], before: Mapping[str, Any]) -> Any:
        """The value of this key in ``reader``'s table (the default, with an error, if it is wrong).

        A path whose base is in ``bases`` is resolved against it; one whose base
        is not is kept as written (the daemon resolves it against the state
        directory it hands the channel at start).  ``before`` holds the values
        of the section's keys read so far (for a :data:`Custom` reader).
        """
        if self.custom is not None:
            return self.custom(reader, self, before)
        value = self._typed(reader)
        if self.check is not None and value != self.default:
            problem = self.check(value)
            if problem:
                message, suggestion = problem if isinstance(problem, tuple) else (problem, "")
                reader.error(self.name, message, suggestion)
                value = self.default
        if self.kind is list:
            return tuple(value)
        if self.kind is tuple and self.base is not None:
            base = bases.get(self.base)
            return tuple(Path(v) if base is None else resolve(base, v) for v in value)
        if self.kind is Path:
            if not value:
                return None
            base = bases.get(self.base) if self.base is not None else None
            return Path(value) if base is None else resolve(base, value)
        return value

    def _typed(self, reader: Reader) -> Any:
        name = self.name
        if self.kind is int:
            return reader.bounded_int(name, self.default, int(self.low or 0), int(self.high or 0))
        if self.kind is float:
            return reader.seconds(name, self.default, self.low or 0.0, self.high or 0.0)
        if self.kind is tuple:
            return reader.strings(name, self.default)
        if self.kind in (list, Path):
            return (
                reader.get(name, list, list(self.default)) if self.kind is list else self._path_text(reader)
            )
        value = reader.get(name, self.kind, self.default)
        if self.choices and value not in self.choices:
            choices = ", ".join(sorted(self.choices))
            reader.error(name, f'must be one of {choices}, not "{value}"', suggest(str(value), self.choices))
            return self.default
        return value

    def _path_text(self, reader: Reader) -> str:
        text = reader.get(self.name, str, str(self.default))
        # An optional path (default "") may be written empty: none.
        if self.name in reader.table and (self.default or text) and (not text or "\x00" in text):
            reader.error(self.name, "must be a non-empty path")
            return str(self.default)
        return text


@record
class Section:
    """One table of ``meterd.toml``.

    Attributes:
        name: Its dotted path in the file (``daemon``, ``security_log.forward``).
        doc: One line for the reference.
        keys: Its keys, in the order the reference lists them.
        tables: Sub-tables it may hold (each read by its own section).
    """

    name: str
    doc: str
    keys: tuple[Key, ...]
    tables: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [key.name for key in self.keys]
        if len(set(names)) != len(names) or set(names) & set(self.tables):
            raise ValueError(f"[{self.name}] declares a key twice")

    @property
    def names(self) -> tuple[str, ...]:
        """Every key and sub-table this section allows."""
        return (*(key.name for key in self.keys), *self.tables)

    def read(self, reader: Reader, bases: Mapping[Base, Path]) -> dict[str, Any]:
        """Check ``reader``'s table for unknown keys and return every key's value by name."""
        reader.check_keys(self.names)
        values: dict[str, Any] = {}
        for key in self.keys:
            values[key.name] = key.read(reader, bases, values)
        return values

    def defaults(self) -> dict[str, Any]:
        """Every key's value in an absent table."""
        return self.read(Reader({}, self.name, "", []), {})

    def default(self, name: str) -> Any:
        """Key ``name``'s value in an absent table: the default of the settings field it fills.

        Raises:
            KeyError: No key of that name is declared.
        """
        return self.defaults()[name]


@record
class Loader(Generic[T]):
    """How a declared section becomes its settings object.

    Attributes:
        section: The declaration, read key by key.
        build: Makes the settings from every key's value (and what ``finish`` adds), by name.
        finish: The section's own checks of its values together, if any.
    """

    section: Section
    build: Callable[..., T]
    finish: Finish | None = None

    def load(self, reader: Reader, bases: Mapping[Base, Path]) -> T:
        """Read ``reader``'s table; problems are recorded on it and wrong values take defaults.

        Args:
            reader: The section's table, with its key path and the shared error list.
            bases: The directories relative paths are taken from; a path whose base
                is absent is kept as written (see :meth:`Key.read`).

        Returns:
            The settings.
        """
        values = self.section.read(reader, bases)
        if self.finish is not None:
            self.finish(reader, values, bases)
        return self.build(**values)


def resolve(base: Path, text: str) -> Path:
    """``text`` as a path, taken from ``base`` if relative (normalised, not resolved)."""
    # Normalised, not resolved, so messages show var/..., not config/daemon/../../var/...
    path = Path(text)
    return Path(os.path.normpath(path if path.is_absolute() else base / path))
