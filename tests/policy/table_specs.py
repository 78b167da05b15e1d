"""Table specs for the compiled-table tests: a hand-made one over a small scope tree, and random valid ones."""

from __future__ import annotations

from hypothesis import strategies as st

from meterd.policy.evaluator import NativeEvaluator
from meterd.policy.permissions import ALL_PERMISSIONS_MASK, Permission
from meterd.policy.request import Channel
from meterd.policy.table import NO_PARENT, U32_MAX, Grant, PrincipalRow, TableSpec, pack_table

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


def packed_evaluator(spec: TableSpec = HAND_SPEC) -> NativeEvaluator:
    """The C evaluator over ``spec`` packed as a table."""
    return NativeEvaluator(pack_table(spec))
