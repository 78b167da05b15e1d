"""The compiled table (table.py): its spec's checks, its byte layout, the evaluator's refusal of bad tables."""

from __future__ import annotations

import operator
import struct
import zlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from meterd.errors import EvaluatorError
from meterd.policy.evaluator import NativeEvaluator, TableFault, TableInfo, TableRefusedError, verdicts
from meterd.policy.permissions import ALL_PERMISSIONS_MASK
from meterd.policy.request import DenyReason
from meterd.policy.table import (
    HEADER_SIZE,
    MAX_GRANTS,
    MAX_NODES,
    MAX_PRINCIPALS,
    NO_PARENT,
    U32_MAX,
    Grant,
    PrincipalRow,
    TableSpec,
    Verdict,
    pack_table,
    table_size,
)
from tests.policy.table_specs import FS_RO, HAND_SPEC, PARENTS, SFTP, packed_evaluator, specs, u32


def _reseal(body: bytes | bytearray) -> bytes:
    """Replace the trailing CRC so that only the deliberate fault remains."""
    data = bytes(body[:-4])
    return data + struct.pack("<I", zlib.crc32(data))


def _patch_u32(table: bytes, offset: int, value: int) -> bytes:
    data = bytearray(table)
    struct.pack_into("<I", data, offset, value)
    return _reseal(data)


def _patch_u16(table: bytes, offset: int, value: int) -> bytes:
    data = bytearray(table)
    struct.pack_into("<H", data, offset, value)
    return _reseal(data)


def _section_offsets(spec: TableSpec) -> dict[str, int]:
    n_channels, n_nodes, n_principals = len(spec.channel_caps), len(spec.node_parents), len(spec.principals)
    caps = HEADER_SIZE
    parents = caps + 4 * n_channels
    flags = parents + 4 * n_nodes
    starts = flags + 4 * n_principals
    grants = starts + 4 * (n_principals + 1)
    return {"caps": caps, "parents": parents, "flags": flags, "starts": starts, "grants": grants}


def _refusal(table: bytes) -> TableFault:
    with pytest.raises(TableRefusedError) as caught:
        NativeEvaluator(table)
    return caught.value.fault


# --- format ---------------------------------------------------------------------------------------


def test_pack_table_layout() -> None:
    table = pack_table(HAND_SPEC)
    magic, version, header_size, total, policy, n_ch, n_nodes, n_pr, n_gr = struct.unpack_from(
        "<4sHHIIIIII", table
    )
    assert (magic, version, header_size) == (b"MTRT", 1, 32)
    assert total == len(table) == table_size(6, 6, 4, 6)
    assert (policy, n_ch, n_nodes, n_pr, n_gr) == (42, 6, 6, 4, 6)
    offsets = _section_offsets(HAND_SPEC)
    assert struct.unpack_from("<6I", table, offsets["parents"]) == PARENTS
    assert struct.unpack_from("<4I", table, offsets["flags"]) == (1, 0, 1, 1)
    assert struct.unpack_from("<5I", table, offsets["starts"]) == (0, 2, 3, 3, 6)
    assert struct.unpack_from("<2I", table, offsets["grants"]) == (2, 1 << FS_RO)
    assert struct.unpack_from("<I", table, len(table) - 4)[0] == zlib.crc32(table[:-4])


def test_table_info_is_read_back() -> None:
    assert packed_evaluator().info == TableInfo(
        policy_version=42, n_channels=6, n_nodes=6, n_principals=4, n_grants=6
    )
    assert packed_evaluator().policy_version == 42


def test_minimal_table_is_accepted() -> None:
    evaluator = packed_evaluator(TableSpec(0, (0,), (NO_PARENT,), ()))
    assert evaluator.info == TableInfo(0, 1, 1, 0, 0)
    assert evaluator.decide(0, 0, 0, 0) is Verdict.UNKNOWN_PRINCIPAL


def test_allow_is_distinctive() -> None:
    assert Verdict.ALLOW.value not in (0, 1)
    assert [v for v in verdicts(bytes(range(256))) if v.allowed] == [Verdict.ALLOW]
    assert verdicts(b"\x00\x08\xff") == [Verdict.BAD_TABLE] * 3


def test_verdicts_map_to_deny_reasons() -> None:
    assert Verdict.ALLOW.deny_reason is None
    assert Verdict.OUT_OF_SCOPE.deny_reason is DenyReason.OUT_OF_SCOPE
    assert Verdict.BAD_TABLE.deny_reason is DenyReason.EVALUATOR_ERROR


@pytest.mark.parametrize(
    ("spec_kwargs", "message"),
    [
        ({"policy_version": -1}, "policy_version"),
        ({"policy_version": 1 << 32}, "policy_version"),
        ({"channel_caps": ()}, "channels"),
        ({"channel_caps": (0,) * 33}, "channels"),
        ({"channel_caps": (1 << 17,)}, "cap"),
        ({"node_parents": ()}, "nodes"),
        ({"node_parents": (0,)}, "root"),
        ({"node_parents": (NO_PARENT, 1)}, "parent"),
        ({"node_parents": (NO_PARENT, -1)}, "parent"),
        ({"principals": (PrincipalRow(True, (Grant(1, 1),)),)}, "missing node"),
        ({"principals": (PrincipalRow(True, (Grant(0, 1 << 17),)),)}, "mask"),
        ({"principals": (PrincipalRow(True, (Grant(0, -1),)),)}, "mask"),
    ],
)
def test_invalid_spec_is_refused(spec_kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "policy_version": 1,
        "channel_caps": (ALL_PERMISSIONS_MASK,),
        "node_parents": (NO_PARENT,),
        "principals": (),
    }
    fields.update(spec_kwargs)
    with pytest.raises(EvaluatorError, match=message):
        TableSpec(**fields)  # type: ignore[arg-type]


# --- refusal of bad tables ------------------------------------------------------------------------


def test_refusal_message_names_the_fault() -> None:
    table = bytearray(pack_table(HAND_SPEC))
    table[-1] ^= 0xFF
    with pytest.raises(EvaluatorError, match=r"^compiled policy refused: checksum mismatch$"):
        NativeEvaluator(bytes(table))


def _header_faults() -> list[tuple[str, bytes, TableFault]]:
    table = pack_table(HAND_SPEC)
    total = len(table)
    return [
        ("empty", b"", TableFault.SHORT),
        ("short header", table[: HEADER_SIZE - 1], TableFault.SHORT),
        ("magic", _reseal(b"MTRX" + table[4:]), TableFault.MAGIC),
        ("version 0", _patch_u16(table, 4, 0), TableFault.VERSION),
        ("version 2", _patch_u16(table, 4, 2), TableFault.VERSION),
        ("header size", _patch_u16(table, 6, 36), TableFault.HEADER_SIZE),
        ("no channels", _patch_u32(table, 16, 0), TableFault.COUNT),
        ("33 channels", _patch_u32(table, 16, 33), TableFault.COUNT),
        ("no nodes", _patch_u32(table, 20, 0), TableFault.COUNT),
        ("too many nodes", _patch_u32(table, 20, MAX_NODES + 1), TableFault.COUNT),
        ("too many principals", _patch_u32(table, 24, MAX_PRINCIPALS + 1), TableFault.COUNT),
        ("too many grants", _patch_u32(table, 28, MAX_GRANTS + 1), TableFault.COUNT),
        ("huge grants", _patch_u32(table, 28, U32_MAX), TableFault.COUNT),
        ("total_size", _patch_u32(table, 8, total + 8), TableFault.SIZE),
        ("counts", _patch_u32(table, 24, 5), TableFault.SIZE),
        ("trailing bytes", _reseal(table[:-4] + b"\0" * 8 + table[-4:]), TableFault.SIZE),
        ("truncated", table[:-1], TableFault.SIZE),
        ("crc", table[:-4] + struct.pack("<I", zlib.crc32(table[:-4]) ^ 1), TableFault.CHECKSUM),
    ]


@pytest.mark.parametrize(
    ("name", "table", "fault"), _header_faults(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_header_faults_are_refused(name: str, table: bytes, fault: TableFault) -> None:
    assert _refusal(table) is fault, name


def _section_faults() -> list[tuple[str, bytes, TableFault]]:
    table = pack_table(HAND_SPEC)
    at = _section_offsets(HAND_SPEC)
    return [
        ("cap bit 17", _patch_u32(table, at["caps"] + 4, 1 << 17), TableFault.CHANNEL_CAP),
        ("root parent", _patch_u32(table, at["parents"], 0), TableFault.PARENT),
        ("self parent", _patch_u32(table, at["parents"] + 4 * 2, 2), TableFault.PARENT),
        ("later parent", _patch_u32(table, at["parents"] + 4 * 2, 5), TableFault.PARENT),
        ("no-parent child", _patch_u32(table, at["parents"] + 4 * 5, NO_PARENT), TableFault.PARENT),
        ("flag bit 1", _patch_u32(table, at["flags"], 3), TableFault.FLAGS),
        ("flag bit 31", _patch_u32(table, at["flags"] + 4, 1 << 31), TableFault.FLAGS),
        ("first start", _patch_u32(table, at["starts"], 1), TableFault.GRANT_START),
        ("decreasing start", _patch_u32(table, at["starts"] + 4, 4), TableFault.GRANT_START),
        ("last start", _patch_u32(table, at["starts"] + 4 * 4, 4), TableFault.GRANT_START),
        ("start past end", _patch_u32(table, at["starts"] + 4 * 3, 7), TableFault.GRANT_START),
        ("grant node", _patch_u32(table, at["grants"] + 8 * 4, 6), TableFault.GRANT_NODE),
        ("grant node huge", _patch_u32(table, at["grants"], U32_MAX), TableFault.GRANT_NODE),
        ("grant mask", _patch_u32(table, at["grants"] + 8 * 1 + 4, 1 << 17), TableFault.GRANT_MASK),
    ]


@pytest.mark.parametrize(
    ("name", "table", "fault"), _section_faults(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_section_faults_are_refused(name: str, table: bytes, fault: TableFault) -> None:
    assert _refusal(table) is fault, name


def test_every_fault_has_a_distinct_code_and_message() -> None:
    assert len({f.value for f in TableFault}) == len(TableFault)
    assert all(f.value < 0 for f in TableFault)
    messages = [f.message for f in TableFault]
    assert len(set(messages)) == len(messages)
    assert "unknown status" not in messages


def test_mutable_buffer_is_copied() -> None:
    table = bytearray(pack_table(HAND_SPEC))
    evaluator = NativeEvaluator(table)
    table[:] = bytes(len(table))
    assert evaluator.decide(0, FS_RO, 2, SFTP) is Verdict.ALLOW


# --- properties -----------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_single_flipped_byte_is_refused(data: st.DataObject) -> None:
    table = bytearray(pack_table(data.draw(specs())))
    position = data.draw(st.integers(0, len(table) - 1))
    table[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(TableRefusedError):
        NativeEvaluator(bytes(table))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_truncation_is_refused(data: st.DataObject) -> None:
    table = pack_table(data.draw(specs()))
    length = data.draw(st.integers(0, len(table) - 1))
    with pytest.raises(TableRefusedError):
        NativeEvaluator(table[:length])


@settings(max_examples=300, deadline=None)
@given(spec=specs(), extra=st.binary(min_size=1, max_size=16))
def test_appended_bytes_are_refused(spec: TableSpec, extra: bytes) -> None:
    with pytest.raises(TableRefusedError):
        NativeEvaluator(pack_table(spec) + extra)


@settings(max_examples=300, deadline=None)
@given(
    junk=st.one_of(
        st.binary(max_size=256), st.binary(max_size=256).map(lambda b: b"MTRT\x01\x00\x20\x00" + b)
    )
)
def test_random_junk_is_refused(junk: bytes) -> None:
    with pytest.raises(TableRefusedError):
        NativeEvaluator(junk)


@settings(max_examples=300, deadline=None)
@given(spec=specs(), sizes=st.tuples(u32, u32, u32, u32))
def test_resealed_counts_that_disagree_with_the_size_are_refused(
    spec: TableSpec, sizes: tuple[int, int, int, int]
) -> None:
    table = pack_table(spec)
    counts = (len(spec.channel_caps), len(spec.node_parents), len(spec.principals), spec.n_grants)
    assume(sizes != counts)
    forged = bytearray(table)
    struct.pack_into("<4I", forged, 16, *sizes)
    with pytest.raises(TableRefusedError) as caught:
        NativeEvaluator(_reseal(forged))
    # Bytes per channel, node, principal (row and grant offset) and grant, as the loader sizes them.
    weights = (4, 4, 8, 8)
    same_size = sum(map(operator.mul, weights, sizes)) == sum(map(operator.mul, weights, counts))
    if not same_size:
        assert caught.value.fault in {TableFault.COUNT, TableFault.SIZE}
