"""``@record`` behaves as ``@dataclass(frozen=True, slots=True)`` does, with shared methods."""

from __future__ import annotations

import copy
import dataclasses
import gc
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterd.record import record


@record
class Reading:
    register: int
    unit: str = "kWh"
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReadingDataclass:
    register: int
    unit: str = "kWh"
    tags: tuple[str, ...] = ()


@record
class Noted:
    value: int
    note: str = field(default="", compare=False)
    cached: int = field(default=0, hash=False)


@record
class Single:
    value: str


@record
class Empty:
    pass


@record
class Secret:
    secret: str

    def __repr__(self) -> str:
        return "Secret(<redacted>)"


@record
class OwnEq:  # noqa: PLW1641 - the record supplies __hash__, as a frozen dataclass would
    value: int

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OwnEq) and other.value % 10 == self.value % 10


values = st.tuples(st.integers(), st.sampled_from(["kWh", "kvarh", "V"]), st.tuples(st.text(max_size=3)))


@given(values, values)
def test_equality_hash_and_repr_match_the_generated_methods(a: Any, b: Any) -> None:
    ra, rb, da, db = Reading(*a), Reading(*b), ReadingDataclass(*a), ReadingDataclass(*b)
    assert (ra == rb) == (da == db)
    assert (ra != rb) == (da != db)
    if ra == rb:
        assert hash(ra) == hash(rb)
    assert repr(ra) == repr(da).replace("ReadingDataclass", "Reading")


def test_another_class_never_compares_equal() -> None:
    generated: object = ReadingDataclass(1)
    assert Reading(1) != generated
    assert Reading(1).__eq__(generated) is NotImplemented
    same_values: object = (1, "kWh", ())
    assert Reading(1) != same_values


def test_frozen() -> None:
    reading = Reading(1)
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'unit'"):
        reading.unit = "V"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'unit'"):
        del reading.unit
    with pytest.raises(dataclasses.FrozenInstanceError):
        object.__getattribute__(reading, "__setattr__")("other", 1)
    assert not hasattr(reading, "__dict__")  # slotted: no stray attributes either


def test_field_options_are_honoured() -> None:
    assert Noted(1, note="a") == Noted(1, note="b")
    assert hash(Noted(1, note="a")) == hash(Noted(1, note="b"))
    assert Noted(1, cached=1) != Noted(1, cached=2)  # compared, not hashed
    assert hash(Noted(1, cached=1)) == hash(Noted(1, cached=2))
    assert Single("a") == Single("a") != Single("b")
    assert hash(Single("a")) == hash(Single("a"))
    assert Empty() == Empty()
    assert hash(Empty()) == hash(Empty())
    assert repr(Empty()) == "Empty()"


def test_methods_written_in_the_body_stay() -> None:
    assert repr(Secret("hunter2")) == "Secret(<redacted>)"
    assert OwnEq(1) == OwnEq(11)
    # A body that defines __eq__ alone gets the record's hash, as a frozen dataclass would.
    assert hash(OwnEq(1)) == hash(OwnEq(1))


def test_it_is_a_dataclass() -> None:
    reading = Reading(7, tags=("a",))
    assert dataclasses.is_dataclass(reading)
    assert [f.name for f in dataclasses.fields(reading)] == ["register", "unit", "tags"]
    assert dataclasses.replace(reading, unit="V") == Reading(7, "V", ("a",))
    assert dataclasses.asdict(reading) == {"register": 7, "unit": "kWh", "tags": ("a",)}
    assert Reading.__match_args__ == ("register", "unit", "tags")
    assert pickle.loads(pickle.dumps(reading)) == reading
    assert copy.deepcopy(reading) == reading


def test_a_record_can_extend_a_record() -> None:
    @record
    class Tagged(Reading):
        source: str = ""

    assert Tagged(1, source="a") == Tagged(1, source="a") != Tagged(1, source="b")
    assert (
        repr(Tagged(1))
        == "test_a_record_can_extend_a_record.<locals>.Tagged(register=1, unit='kWh', tags=(), source='')"
    )
    assert Tagged(1) != Reading(1)


def test_no_method_keeps_the_first_class_alive() -> None:
    """The slotted copy replaces the decorated class; nothing may keep the original alive."""

    def live(name: str) -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, type) and o.__qualname__.endswith(name))

    def make_record() -> type:
        @record
        class FreshRecord:
            value: int

        return FreshRecord

    def make_dataclass() -> type:
        @dataclass(frozen=True, slots=True)
        class FreshDataclass:
            value: int

        return FreshDataclass

    kept_record, kept_dataclass = make_record(), make_dataclass()
    assert live("FreshRecord") == 1
    if sys.version_info < (3, 12):  # the generated frozen __setattr__ closes over the first class
        assert live("FreshDataclass") == 2
    assert kept_record is not None
    assert kept_dataclass is not None


def test_meterd_declares_its_frozen_slotted_dataclasses_as_records() -> None:
    """Each ``@dataclass(frozen=True, slots=True)`` would bring back its five compiled methods."""
    package = Path(__file__).resolve().parents[1] / "meterd"
    spelled = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "record.py" and "@dataclass(frozen=True, slots=True)" in path.read_text()
    ]
    assert spelled == []


def test_one_field_compares_as_the_generated_tuple_does() -> None:
    nan = float("nan")
    assert Single(nan) == Single(nan)  # type: ignore[arg-type]
    assert ReadingDataclass(nan) == ReadingDataclass(nan)  # type: ignore[arg-type]
    assert Single("a") != Single("b")
