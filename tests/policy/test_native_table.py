"""The compiled table and the native evaluator: format, refusal of bad tables, decisions."""

from __future__ import annotations

import operator
import struct
import zlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from meterd.errors import EvaluatorError
from meterd.policy.evaluator import (
    NativeEvaluator,
    RequestBatch,
    TableFault,
    TableInfo,
    TableRefusedError,
    verdicts,
)
from meterd.policy.permissions import ALL_PERMISSIONS_MASK, Permission
from meterd.policy.request import Channel, DenyReason
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

# Scope tree of the hand-made spec:
#   0 /            1 /files        2 /files/data      3 /files/firmware
#   4 /modbus      5 /modbus/unit/1
PARENTS = (NO_PARENT, 0, 1, 1, 0, 4)
FS_RO = Permission.FS_READ_ONLY.bit
FS_RW = Permission.FS_READ_WRITE.bit
FW = Permission.FIRMWARE_MANAGEMENT.bit
TERMINAL = Permission.TERMINAL_ACCESS.bit
DEMAND = Permission.PEAK_DEMAND_RESET.bit
SSH, SFTP, SERIAL, PANEL, MODBUS, LOCAL = (c.index for c in Channel)

CAPS = tuple(
    ALL_PERMISSIONS_MASK & ~(1 << TERMINAL) if c is Channel.MODBUS else ALL_PERMISSIONS_MASK for c in Channel
)

HAND_SPEC = TableSpec(
    policy_version=42,
    channel_caps=CAPS,
    node_parents=PARENTS,
    principals=(
        # 0: reader of /files/data, terminal everywhere
        PrincipalRow(True, (Grant(2, 1 << FS_RO), Grant(0, 1 << TERMINAL))),
        # 1: disabled administrator
        PrincipalRow(False, (Grant(0, ALL_PERMISSIONS_MASK),)),
        # 2: no grants at all
        PrincipalRow(True, ()),
        # 3: firmware under /files/firmware, demand reset on unit 1, read-write under /files
        PrincipalRow(True, (Grant(3, 1 << FW), Grant(5, 1 << DEMAND), Grant(1, 1 << FS_RW))),
    ),
)


def _evaluator(spec: TableSpec = HAND_SPEC) -> NativeEvaluator:
    return NativeEvaluator(pack_table(spec))


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
    assert _evaluator().info == TableInfo(
        policy_version=42, n_channels=6, n_nodes=6, n_principals=4, n_grants=6
    )
    assert _evaluator().policy_version == 42


def test_minimal_table_is_accepted() -> None:
    evaluator = _evaluator(TableSpec(0, (0,), (NO_PARENT,), ()))
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


# --- hand-checked decisions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "verdict"),
    [
        ((0, FS_RO, 2, SFTP), Verdict.ALLOW),  # at the anchor
        ((0, TERMINAL, 5, SSH), Verdict.ALLOW),  # root grant covers every node
        ((0, FS_RO, 1, SFTP), Verdict.OUT_OF_SCOPE),  # above the anchor
        ((0, FS_RO, 3, SFTP), Verdict.OUT_OF_SCOPE),  # sibling of the anchor
        ((0, FS_RW, 2, SFTP), Verdict.NOT_GRANTED),
        ((0, TERMINAL, 0, MODBUS), Verdict.CHANNEL_CAP),
        ((1, FS_RO, 0, SFTP), Verdict.DISABLED),
        ((2, FS_RO, 0, SFTP), Verdict.NOT_GRANTED),
        ((3, FW, 3, SFTP), Verdict.ALLOW),
        ((3, DEMAND, 5, MODBUS), Verdict.ALLOW),
        ((3, DEMAND, 4, MODBUS), Verdict.OUT_OF_SCOPE),
        ((3, FS_RW, 3, SFTP), Verdict.ALLOW),  # below the /files anchor
        ((3, FS_RW, 0, SFTP), Verdict.OUT_OF_SCOPE),
        ((4, FS_RO, 0, SFTP), Verdict.UNKNOWN_PRINCIPAL),
        ((U32_MAX, FS_RO, 0, SFTP), Verdict.UNKNOWN_PRINCIPAL),
        # Malformed requests are BAD_REQUEST before the principal is looked at.
        ((4, 17, 0, SFTP), Verdict.BAD_REQUEST),
        ((0, FS_RO, 6, SFTP), Verdict.BAD_REQUEST),
        ((0, FS_RO, 2, 6), Verdict.BAD_REQUEST),
        ((0, U32_MAX, 2, SFTP), Verdict.BAD_REQUEST),
        ((-1, FS_RO, 2, SFTP), Verdict.BAD_REQUEST),
        ((0, FS_RO, 1 << 32, SFTP), Verdict.BAD_REQUEST),
        # Disabled wins over everything the principal lacks.
        ((1, 16, 5, LOCAL), Verdict.DISABLED),
    ],
)
def test_hand_checked_decisions(request_: tuple[int, int, int, int], verdict: Verdict) -> None:
    evaluator = _evaluator()
    assert evaluator.decide(*request_) is verdict
    assert evaluator.decide_many([request_]) == [verdict]


def test_scope_check_uses_the_granting_grant() -> None:
    # Bit 4 is granted at /files/data and bit 3 at the root: the root grant must
    # not lend its scope to bit 4.
    spec = TableSpec(
        1, (ALL_PERMISSIONS_MASK,), PARENTS, (PrincipalRow(True, (Grant(2, 1 << 4), Grant(0, 1 << 3))),)
    )
    evaluator = _evaluator(spec)
    assert evaluator.decide(0, 4, 5, 0) is Verdict.OUT_OF_SCOPE
    assert evaluator.decide(0, 3, 5, 0) is Verdict.ALLOW


def test_batches_are_reusable_and_immutable() -> None:
    evaluator = _evaluator()
    requests = [(0, FS_RO, 2, SFTP), (1, FS_RO, 0, SFTP), (9, 99, 99, 99)]
    batch = RequestBatch(requests)
    assert len(batch) == 3
    first = evaluator.decide_batch(batch)
    assert first == bytes([Verdict.ALLOW, Verdict.DISABLED, Verdict.BAD_REQUEST])
    assert evaluator.decide_batch(batch) == first
    # The same batch against another table: node 2 no longer exists.
    assert _evaluator(TableSpec(1, (0,) * 6, (NO_PARENT,), ())).decide_batch(batch) == bytes(
        [Verdict.BAD_REQUEST, Verdict.UNKNOWN_PRINCIPAL, Verdict.BAD_REQUEST]
    )


def test_batch_from_generator_and_empty_batch() -> None:
    evaluator = _evaluator()
    assert evaluator.decide_many(r for r in [(0, FS_RO, 2, SFTP)]) == [Verdict.ALLOW]
    assert evaluator.decide_many([]) == []
    assert evaluator.decide_batch(RequestBatch(())) == b""


def test_malformed_batch_requests_raise() -> None:
    with pytest.raises(ValueError, match="tuple"):
        RequestBatch([(0, 1, 2)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="tuple"):
        RequestBatch([(0, 1, 2), (0, 1, 2, 3, 4)])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        RequestBatch([(0, 1.5, 2, 3)])  # type: ignore[list-item]


# --- properties -----------------------------------------------------------------------------------

u32 = st.integers(min_value=0, max_value=U32_MAX)


@st.composite
def specs(draw: st.DrawFn, max_principals: int = 8) -> TableSpec:
    n_nodes = draw(st.integers(1, 12))
    parents = [NO_PARENT] + [draw(st.integers(0, i - 1)) for i in range(1, n_nodes)]
    # Few bits per mask, so that both allows and each kind of denial occur.
    masks = st.one_of(
        st.integers(0, 16).map(lambda bit: 1 << bit),
        st.integers(0, ALL_PERMISSIONS_MASK),
        st.just(ALL_PERMISSIONS_MASK),
    )
    grants = st.builds(Grant, st.integers(0, n_nodes - 1), masks)
    rows = draw(
        st.lists(
            st.builds(PrincipalRow, st.booleans(), st.lists(grants, max_size=4).map(tuple)),
            max_size=max_principals,
        )
    )
    caps = draw(st.lists(masks, min_size=1, max_size=8))
    return TableSpec(draw(u32), tuple(caps), tuple(parents), tuple(rows))


def requests_for(spec: TableSpec) -> st.SearchStrategy[tuple[int, int, int, int]]:
    """Requests mostly inside the table's ranges, sometimes just or far outside."""

    def field(limit: int) -> st.SearchStrategy[int]:
        return st.one_of(st.integers(0, limit), st.integers(0, limit - 1), u32)

    return st.tuples(
        field(len(spec.principals) + 1),
        field(17),
        field(len(spec.node_parents)),
        field(len(spec.channel_caps)),
    )


def reference(spec: TableSpec, principal: int, permission: int, node: int, channel: int) -> Verdict:
    """The decision rules of the format, written as plainly as possible."""
    if not all(0 <= field <= U32_MAX for field in (principal, permission, node, channel)):
        return Verdict.BAD_REQUEST
    if not (
        0 <= permission < 17 and 0 <= channel < len(spec.channel_caps) and 0 <= node < len(spec.node_parents)
    ):
        return Verdict.BAD_REQUEST
    if not 0 <= principal < len(spec.principals):
        return Verdict.UNKNOWN_PRINCIPAL
    row = spec.principals[principal]
    if not row.enabled:
        return Verdict.DISABLED
    bit = 1 << permission
    anchors = {g.node for g in row.grants if g.mask & bit}
    if not anchors:
        return Verdict.NOT_GRANTED
    path = {node}
    while node != 0:
        node = spec.node_parents[node]
        path.add(node)
    if not anchors & path:
        return Verdict.OUT_OF_SCOPE
    if not spec.channel_caps[channel] & bit:
        return Verdict.CHANNEL_CAP
    return Verdict.ALLOW


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
    # Counts that add up to the same size pass both checks; a structural one must refuse them.


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_decisions_match_the_reference(data: st.DataObject) -> None:
    spec = data.draw(specs())
    evaluator = _evaluator(spec)
    requests = data.draw(st.lists(requests_for(spec), max_size=20))
    for request in requests:
        assert evaluator.decide(*request) is reference(spec, *request), request


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_batch_equals_singles(data: st.DataObject) -> None:
    spec = data.draw(specs())
    evaluator = _evaluator(spec)
    requests = data.draw(st.lists(requests_for(spec), max_size=40))
    singles = [evaluator.decide(*r) for r in requests]
    assert evaluator.decide_many(requests) == singles
    assert evaluator.decide_batch(RequestBatch(requests)) == bytes(singles)


wide = st.integers(min_value=-(1 << 40), max_value=1 << 40)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_out_of_range_requests_never_allow(data: st.DataObject) -> None:
    spec = data.draw(specs())
    evaluator = _evaluator(spec)
    request = data.draw(st.tuples(wide, wide, wide, wide))
    principal, permission, node, channel = request
    in_range = (
        0 <= principal < len(spec.principals)
        and 0 <= permission < 17
        and 0 <= node < len(spec.node_parents)
        and 0 <= channel < len(spec.channel_caps)
    )
    assume(not in_range)
    expected = reference(spec, *request)
    assert expected in {Verdict.BAD_REQUEST, Verdict.UNKNOWN_PRINCIPAL}
    assert evaluator.decide(*request) is expected
    assert evaluator.decide_many([request]) == [expected]
