"""Walking parsed TOML with key paths: type checks, unknown keys, did-you-mean.

A :class:`Reader` wraps one table and the key path that leads to it; every
problem it finds is appended to a shared error list instead of raised, so that
one pass over a policy reports every error at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from meterd.errors import ConfigError

T = TypeVar("T")


def suggest(word: str, choices: Iterable[str]) -> str:
    """Return the closest of ``choices`` to ``word``, or empty if none is close."""
    # Only a mistake needs difflib: a daemon reading a correct configuration never loads it.
    import difflib  # noqa: PLC0415

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else ""


def join_key(path: str, key: str | int) -> str:
    """Extend a dotted key path with a key or a list index."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    shown = key if key.replace("_", "").replace("-", "").isalnum() else f'"{key}"'
    return f"{path}.{shown}" if path else shown


class Reader:
    """A view of one TOML table that records problems with their key paths."""

    def __init__(self, table: Mapping[str, Any], path: str, source: str, errors: list[ConfigError]) -> None:
        self.table = table
        self.path = path
        self.source = source
        self.errors = errors

    def error(self, key: str | int | None, message: str, suggestion: str = "") -> None:
        """Record a problem at ``key`` (or at this table when ``key`` is None)."""
        path = self.path if key is None else join_key(self.path, key)
        self.errors.append(ConfigError(message, source=self.source, key_path=path, suggestion=suggestion))

    def error_item(self, key: str, index: int | tuple[int, ...], message: str, suggestion: str = "") -> None:
        """Record a problem at element ``index`` of the list ``key`` (a tuple for nested lists)."""
        path = join_key(self.path, key)
        for i in index if isinstance(index, tuple) else (index,):
            path = join_key(path, i)
        self.errors.append(ConfigError(message, source=self.source, key_path=path, suggestion=suggestion))

    def check_keys(self, allowed: Iterable[str]) -> None:
        """Report every key of this table not in ``allowed``."""
        allowed = tuple(allowed)
        for key in self.table:
            if key not in allowed:
                self.error(key, f'unknown key "{key}"', suggest(key, allowed))

    def get(self, key: str, kind: type[T], default: T) -> T:
        """Return ``table[key]`` if it has type ``kind``, else record an error and return ``default``."""
        if key not in self.table:
            return default
        value = self.table[key]
        # bool is an int in Python, but `true` is never a valid count in a policy.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.error(key, f"must be {_kind_name(kind)}, not {_kind_name(type(value))}")
            return default
        return value

    def bounded_int(self, key: str, default: int, low: int, high: int) -> int:
        """Return an integer setting, checking ``low <= value <= high``."""
        value = self.get(key, int, default)
        if not low <= value <= high:
            self.error(key, f"must be between {low} and {high}, not {value}")
            return default
        return value

    def seconds(self, key: str, default: float, low: float, high: float) -> float:
        """Return a duration in seconds (integer or decimal), checking ``low <= value <= high``."""
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(key, "must be a number of seconds")
            return default
        if not low <= value <= high:
            self.error(key, f"must be between {low:g} and {high:g} seconds, not {value}")
            return default
        return float(value)

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """Return a list of strings, recording an error for each non-string element."""
        values = self.get(key, list, list(default))
        out: list[str] = []
        for i, value in enumerate(values):
            if isinstance(value, str):
                out.append(value)
            else:
                self.error_item(key, i, f"must be a string, not {_kind_name(type(value))}")
        return tuple(out)

    def sub(self, key: str) -> Reader:
        """Return a reader of the sub-table ``key`` (empty if absent or not a table)."""
        table = self.get(key, dict, {})
        return Reader(table, join_key(self.path, key), self.source, self.errors)

    def tables(self) -> Iterable[tuple[str, Reader]]:
        """Yield ``(name, reader)`` for each entry, which must itself be a table."""
        for name, value in self.table.items():
            if isinstance(value, dict):
                yield name, Reader(value, join_key(self.path, name), self.source, self.errors)
            else:
                self.error(name, f"must be a table, not {_kind_name(type(value))}")


def _kind_name(kind: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        bool: "true or false",
        list: "a list",
        dict: "a table",
        float: "a number",
    }.get(kind, kind.__name__)
