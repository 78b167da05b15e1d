"""The daemon's build has no fault injection; the writer reaches the native part only through the store."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import meterd.seclog
from meterd.seclog import native
from meterd.seclog.keys import pack_slot, unpack_slot
from meterd.seclog.store import SegmentStore
from meterd.seclog.syncer import Syncer

SECLOG = Path(meterd.seclog.__file__).parent


def test_fault_injection_is_only_in_the_test_build() -> None:
    production = importlib.import_module("meterd._seal")
    test_build = importlib.import_module("meterd._seal_faults")
    assert not hasattr(production.lib, "mtr_syncer_set_fault")
    assert hasattr(test_build.lib, "mtr_syncer_set_fault")
    assert native.FAULTS  # the suite runs the test build (tests/conftest.py)


def test_only_the_native_module_imports_the_compiled_part() -> None:
    importers = set()
    for path in SECLOG.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if any(name.startswith("meterd._seal") for name in names):
                importers.add(path.name)
    assert importers == set()  # native.py loads it by name, after choosing the build


def test_the_writer_reaches_the_native_part_only_through_the_store() -> None:
    tree = ast.parse((SECLOG / "writer.py").read_text())
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "syncer" not in attributes
    assert not imported & {"meterd.seclog.syncer", "meterd.seclog.sealer", "meterd.seclog.native"}


def test_a_key_slot_round_trips_through_its_one_definition() -> None:
    slot = pack_slot(123_456, bytes(range(32)))
    assert len(slot) == 64
    assert slot[:4] == b"MSK1"
    assert unpack_slot(slot) == (123_456, bytes(range(32)))
    damaged = bytearray(slot)
    damaged[20] ^= 1
    assert unpack_slot(bytes(damaged)) is None


def test_the_syncer_alone_numbers_records_and_sizes_are_not_passed_back() -> None:
    assert isinstance(SegmentStore.__dict__["seq"], property)  # read from the syncer, never kept
    assert set(inspect.signature(Syncer.submit).parameters) == {
        "self",
        "records",
        "count",
        "ts",
        "new_segment_fd",
        "checkpoint_last",
    }
