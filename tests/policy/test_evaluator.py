"""The native evaluator's decisions (evaluator.py): hand-checked, in batches, and against a plain reference."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from meterd.policy.evaluator import RequestBatch
from meterd.policy.permissions import ALL_PERMISSIONS_MASK
from meterd.policy.table import NO_PARENT, U32_MAX, Grant, PrincipalRow, TableSpec, Verdict
from tests.policy.table_specs import (
    DEMAND,
    FS_RO,
    FS_RW,
    FW,
    LOCAL,
    MODBUS,
    PARENTS,
    SFTP,
    SSH,
    TERMINAL,
    packed_evaluator,
    specs,
    u32,
)

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
    evaluator = packed_evaluator()
    assert evaluator.decide(*request_) is verdict
    assert evaluator.decide_many([request_]) == [verdict]


def test_scope_check_uses_the_granting_grant() -> None:
    # Bit 4 is granted at /files/data and bit 3 at the root: the root grant must
    # not lend its scope to bit 4.
    spec = TableSpec(
        1, (ALL_PERMISSIONS_MASK,), PARENTS, (PrincipalRow(True, (Grant(2, 1 << 4), Grant(0, 1 << 3))),)
    )
    evaluator = packed_evaluator(spec)
    assert evaluator.decide(0, 4, 5, 0) is Verdict.OUT_OF_SCOPE
    assert evaluator.decide(0, 3, 5, 0) is Verdict.ALLOW


def test_batches_are_reusable_and_immutable() -> None:
    evaluator = packed_evaluator()
    requests = [(0, FS_RO, 2, SFTP), (1, FS_RO, 0, SFTP), (9, 99, 99, 99)]
    batch = RequestBatch(requests)
    assert len(batch) == 3
    first = evaluator.decide_batch(batch)
    assert first == bytes([Verdict.ALLOW, Verdict.DISABLED, Verdict.BAD_REQUEST])
    assert evaluator.decide_batch(batch) == first
    # The same batch against another table: node 2 no longer exists.
    assert packed_evaluator(TableSpec(1, (0,) * 6, (NO_PARENT,), ())).decide_batch(batch) == bytes(
        [Verdict.BAD_REQUEST, Verdict.UNKNOWN_PRINCIPAL, Verdict.BAD_REQUEST]
    )


def test_batch_from_generator_and_empty_batch() -> None:
    evaluator = packed_evaluator()
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


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_decisions_match_the_reference(data: st.DataObject) -> None:
    spec = data.draw(specs())
    evaluator = packed_evaluator(spec)
    requests = data.draw(st.lists(requests_for(spec), max_size=20))
    for request in requests:
        assert evaluator.decide(*request) is reference(spec, *request), request


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_batch_equals_singles(data: st.DataObject) -> None:
    spec = data.draw(specs())
    evaluator = packed_evaluator(spec)
    requests = data.draw(st.lists(requests_for(spec), max_size=40))
    singles = [evaluator.decide(*r) for r in requests]
    assert evaluator.decide_many(requests) == singles
    assert evaluator.decide_batch(RequestBatch(requests)) == bytes(singles)


wide = st.integers(min_value=-(1 << 40), max_value=1 << 40)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_out_of_range_requests_never_allow(data: st.DataObject) -> None:
    spec = data.draw(specs())
    evaluator = packed_evaluator(spec)
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
