"""The compiled policy table: its flat input, its byte layout and its decision codes.

The policy compiler reduces a validated policy to a :class:`TableSpec` (indices
only: principals, scope-tree nodes, channels and permission bits), and
:func:`pack_table` turns the spec into the checksummed byte table the native
evaluator reads.  The byte layout is documented in ``native/meterd_eval.h``;
this module and that header must change together.

Invariants (checked when a :class:`TableSpec` is built, so a spec that exists
packs into a table the evaluator accepts):
    * 1 <= channels <= 32, 1 <= nodes <= 2**20, principals <= 2**20,
      grants <= 2**24; the policy version fits in 32 bits.
    * Node 0 is the root "/" and has the parent :data:`NO_PARENT`; every other
      node's parent has a smaller index, so walks towards the root terminate.
    * Every grant is anchored at an existing node; every mask (grant or
      channel cap) carries only permission bits 0..16.
    * :data:`Verdict.ALLOW` is neither 0 nor 1, so a zeroed result never
      reads as an allow.

Nothing here performs I/O.
"""

from __future__ import annotations

import enum
import struct
import zlib
from itertools import chain

from meterd.errors import EvaluatorError
from meterd.policy.permissions import ALL_PERMISSIONS_MASK
from meterd.policy.request import DenyReason
from meterd.record import record

MAGIC = b"MTRT"
FORMAT_VERSION = 1
HEADER_SIZE = 32
N_PERMISSIONS = 17
MAX_CHANNELS = 32
MAX_NODES = 1 << 20
MAX_PRINCIPALS = 1 << 20
MAX_GRANTS = 1 << 24
U32_MAX = 0xFFFF_FFFF
#: The parent of the root node (node 0).
NO_PARENT = U32_MAX

_HEADER = struct.Struct("<4sHHIIIIII")

# Format version 1 has room for exactly the 17 permission bits; a new
# permission needs a new format version, not a silently wider mask.
if ALL_PERMISSIONS_MASK != (1 << N_PERMISSIONS) - 1:
    raise ImportError("the permission catalogue no longer fits table format version 1")


class Verdict(enum.IntEnum):
    """A decision code of the native evaluator; the value is the C code."""

    ALLOW = 0xA5
    UNKNOWN_PRINCIPAL = 1
    DISABLED = 2
    NOT_GRANTED = 3
    OUT_OF_SCOPE = 4
    CHANNEL_CAP = 5
    BAD_REQUEST = 6
    BAD_TABLE = 7

    @property
    def allowed(self) -> bool:
        """True only for :attr:`ALLOW`."""
        return self is Verdict.ALLOW

    @property
    def deny_reason(self) -> DenyReason | None:
        """The :class:`DenyReason` of a refusal, ``None`` for an allow."""
        return _DENY_REASONS[self]


_DENY_REASONS: dict[Verdict, DenyReason | None] = {
    Verdict.ALLOW: None,
    Verdict.UNKNOWN_PRINCIPAL: DenyReason.UNKNOWN_PRINCIPAL,
    Verdict.DISABLED: DenyReason.DISABLED,
    Verdict.NOT_GRANTED: DenyReason.NOT_GRANTED,
    Verdict.OUT_OF_SCOPE: DenyReason.OUT_OF_SCOPE,
    Verdict.CHANNEL_CAP: DenyReason.CHANNEL_CAP,
    Verdict.BAD_REQUEST: DenyReason.BAD_REQUEST,
    Verdict.BAD_TABLE: DenyReason.EVALUATOR_ERROR,
}


@record
class Grant:
    """One assignment of a principal: permissions anchored at a scope node.

    Attributes:
        node: Index of the scope-tree node the grant applies at (and below).
        mask: Permission bit mask (bits 0..16 only).

    """

    node: int
    mask: int


@record
class PrincipalRow:
    """A principal as the table sees it.

    Attributes:
        enabled: False refuses every request of the principal.
        grants: The principal's grants, in any order.

    """

    enabled: bool
    grants: tuple[Grant, ...] = ()


@record
class TableSpec:
    """The flat, validated input of a compiled table.

    Attributes:
        policy_version: Opaque 32-bit version, reported back by the evaluator.
        channel_caps: Per channel index, the mask a channel may ever grant.
        node_parents: Per node index, its parent's index; ``node_parents[0]``
            is :data:`NO_PARENT`.
        principals: Per principal index, its flags and grants.

    Raises:
        EvaluatorError: When a module invariant does not hold.

    """

    policy_version: int
    channel_caps: tuple[int, ...]
    node_parents: tuple[int, ...]
    principals: tuple[PrincipalRow, ...]

    def __post_init__(self) -> None:
        _check_spec(self)

    @property
    def n_grants(self) -> int:
        """The total number of grants of all principals."""
        return sum(len(p.grants) for p in self.principals)


def _refuse(what: str) -> EvaluatorError:
    return EvaluatorError(f"table spec invalid: {what}")


def _check_spec(spec: TableSpec) -> None:
    if not 0 <= spec.policy_version <= U32_MAX:
        raise _refuse(f"policy_version {spec.policy_version} does not fit in 32 bits")
    _check_channels(spec.channel_caps)
    _check_nodes(spec.node_parents)
    _check_principals(spec.principals, len(spec.node_parents))


def _check_channels(channel_caps: tuple[int, ...]) -> None:
    if not 1 <= len(channel_caps) <= MAX_CHANNELS:
        raise _refuse(f"{len(channel_caps)} channels, expected 1..{MAX_CHANNELS}")
    for index, cap in enumerate(channel_caps):
        if not 0 <= cap <= ALL_PERMISSIONS_MASK:
            raise _refuse(f"channel {index} cap {cap:#x} has bits outside the permissions")


def _check_nodes(node_parents: tuple[int, ...]) -> None:
    n_nodes = len(node_parents)
    if not 1 <= n_nodes <= MAX_NODES:
        raise _refuse(f"{n_nodes} nodes, expected 1..{MAX_NODES}")
    if node_parents[0] != NO_PARENT:
        raise _refuse("node 0 (the root) must have no parent")
    for index, parent in enumerate(node_parents[1:], start=1):
        if not 0 <= parent < index:
            raise _refuse(f"node {index} has parent {parent}; parents must precede their children")


def _check_principals(principals: tuple[PrincipalRow, ...], n_nodes: int) -> None:
    if len(principals) > MAX_PRINCIPALS:
        raise _refuse(f"{len(principals)} principals, at most {MAX_PRINCIPALS}")
    n_grants = 0
    for index, row in enumerate(principals):
        for grant in row.grants:
            if not 0 <= grant.node < n_nodes:
                raise _refuse(f"principal {index} has a grant at missing node {grant.node}")
            if not 0 <= grant.mask <= ALL_PERMISSIONS_MASK:
                raise _refuse(f"principal {index} has a grant mask {grant.mask:#x} outside the permissions")
        n_grants += len(row.grants)
    if n_grants > MAX_GRANTS:
        raise _refuse(f"{n_grants} grants, at most {MAX_GRANTS}")


def table_size(n_channels: int, n_nodes: int, n_principals: int, n_grants: int) -> int:
    """Return the byte size of a table with these counts, trailing CRC included."""
    return HEADER_SIZE + 4 * (n_channels + n_nodes + 2 * n_principals + 1) + 8 * n_grants + 4


def pack_table(spec: TableSpec) -> bytes:
    """Return the compiled, checksummed table of ``spec``.

    Args:
        spec: A validated table specification.

    Returns:
        The table bytes, in the format of ``native/meterd_eval.h``.

    """
    rows = spec.principals
    starts = [0]
    for row in rows:
        starts.append(starts[-1] + len(row.grants))
    n_grants = starts[-1]
    size = table_size(len(spec.channel_caps), len(spec.node_parents), len(rows), n_grants)
    header = _HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
        HEADER_SIZE,
        size,
        spec.policy_version,
        len(spec.channel_caps),
        len(spec.node_parents),
        len(rows),
        n_grants,
    )
    words = chain(
        spec.channel_caps,
        spec.node_parents,
        (1 if row.enabled else 0 for row in rows),
        starts,
        chain.from_iterable((g.node, g.mask) for row in rows for g in row.grants),
    )
    n_words = (size - HEADER_SIZE - 4) // 4
    body = header + struct.pack(f"<{n_words}I", *words)
    return body + struct.pack("<I", zlib.crc32(body))
