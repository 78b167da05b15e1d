"""``@record``: a frozen, slotted dataclass whose comparison, hash and repr are shared.

``@dataclass(frozen=True, slots=True)`` compiles up to six methods for every
class from generated source (``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, ``__setattr__``, ``__delattr__``), and on Python 3.11 the
frozen ``__setattr__`` keeps the first class of each slotted dataclass alive
through its closure.  Over the hundred-odd records an idle meter loads, that
is most of a megabyte of code objects and dead classes.  A record keeps only
the generated ``__init__`` (the one method whose speed and signature
matter) and takes the other five from this module, each one function for
every record: equality and hash read the compared fields through one
``operator.attrgetter`` per class, a C call.

A record is a real dataclass (``dataclasses.fields``, ``replace`` and
``asdict`` work, ``is_dataclass`` is true) with the semantics of the
generated methods: instances of the same class compare and hash by their
``compare`` fields, every other class compares unequal, assigning or
deleting a field raises :class:`dataclasses.FrozenInstanceError`, and a
``__repr__``, ``__eq__`` or ``__hash__`` written in the class body is kept.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform

_T = TypeVar("_T")


def _no_fields(_: object) -> tuple[()]:
    return ()


def _eq(self: Any, other: object) -> object:  # bool, or NotImplemented for another class
    key: Callable[[object], object] = self.__record_compared__
    if other.__class__ is self.__class__:
        return key(self) == key(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(self.__record_hashed__(self))


def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__record_shown__)
    return f"{type(self).__qualname__}({shown})"


def _setattr(self: object, name: str, value: object) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: object, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


def _getter(names: list[str]) -> Callable[[object], object]:
    """One C call that reads the fields ``names`` of an instance, as a tuple."""
    if not names:
        # A plain function on the class would bind to the instance: a staticmethod does not.
        return staticmethod(_no_fields)
    # One name alone would read the bare value; a tuple compares its items as the
    # generated methods do (identity first, so a field holding NaN equals itself).
    return operator.attrgetter(*names, *names) if len(names) == 1 else operator.attrgetter(*names)


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: type[_T]) -> type[_T]:
    """Make ``cls`` a frozen, slotted dataclass with the shared methods of this module."""
    own = vars(cls)
    # As the generated methods would: a body's own method stays, except the
    # ``__hash__ = None`` Python implies when the body defines ``__eq__`` alone.
    keep = {
        "__repr__": "__repr__" in own,
        "__eq__": "__eq__" in own,
        "__hash__": "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own),
    }
    made = dataclasses.dataclass(frozen=True, slots=True, repr=False, eq=False)(cls)
    fields = dataclasses.fields(made)  # type: ignore[arg-type]
    compared = [f.name for f in fields if f.compare]
    hashed = [f.name for f in fields if (f.compare if f.hash is None else f.hash)]
    compare = _getter(compared)
    type.__setattr__(made, "__record_compared__", compare)
    type.__setattr__(made, "__record_hashed__", compare if hashed == compared else _getter(hashed))
    type.__setattr__(made, "__record_shown__", tuple(f.name for f in fields if f.repr))
    # Replacing the generated pair also drops its closure over the first class.
    type.__setattr__(made, "__setattr__", _setattr)
    type.__setattr__(made, "__delattr__", _delattr)
    for name, method in (("__repr__", _repr), ("__eq__", _eq), ("__hash__", _hash)):
        if not keep[name]:
            type.__setattr__(made, name, method)
    return made
