"""The typed face of the native evaluator; the only module that touches ``meterd._evaluator``.

A :class:`NativeEvaluator` wraps one compiled table (see
:mod:`meterd.policy.table`) that the C code has checked in full, and decides
requests given as indices: ``(principal, permission bit, resource node,
channel)``.  C status codes become :class:`TableRefusedError` here and
nowhere else; C decision codes become :class:`~meterd.policy.table.Verdict`.

Invariants:
    * An evaluator exists only for a table the C code accepted: a refused
      table raises in the constructor and can never decide.
    * The table bytes are immutable and referenced for the evaluator's whole
      life, so the C handle's pointers into them stay valid.
    * A code the C code returns that is not a known verdict reads as
      ``BAD_TABLE``: decisions fail closed.
    * A request field outside ``0 .. 2**32 - 1`` decides ``BAD_REQUEST``.
    * Evaluators and batches are never changed after construction, so both
      may be shared between threads (the C calls run without the GIL).
"""

from __future__ import annotations

import enum
from array import array
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

from meterd._evaluator import ffi, lib
from meterd.errors import EvaluatorError
from meterd.policy import table as table_format
from meterd.policy.table import U32_MAX, Verdict
from meterd.record import record

#: A request as indices: (principal, permission bit, resource node, channel).
RequestTuple = tuple[int, int, int, int]

# The request array is handed to C as ``mtr_request[]``: four uint32 per request.
_U32_CODE = "I" if array("I").itemsize == 4 else "L"

# Stands in for a request with a field that does not fit in uint32; the
# permission bit is out of range, so C decides BAD_REQUEST.
_UNREPRESENTABLE: RequestTuple = (0, U32_MAX, 0, 0)


class TableFault(enum.Enum):
    """Why the native evaluator refused a table; the value is the C status code."""

    ARGUMENT = -1
    SHORT = -2
    MAGIC = -3
    VERSION = -4
    HEADER_SIZE = -5
    COUNT = -6
    SIZE = -7
    CHECKSUM = -8
    CHANNEL_CAP = -9
    PARENT = -10
    FLAGS = -11
    GRANT_START = -12
    GRANT_NODE = -13
    GRANT_MASK = -14

    @property
    def message(self) -> str:
        """The C library's description of the fault, e.g. ``checksum mismatch``."""
        return _describe(self.value)


class TableRefusedError(EvaluatorError):
    """The native evaluator refused a compiled table.

    Attributes:
        fault: The class of fault the C check found first.

    """

    def __init__(self, fault: TableFault) -> None:
        self.fault = fault
        super().__init__(f"compiled policy refused: {fault.message}")


@record
class TableInfo:
    """What the C code read back from an accepted table's header.

    Attributes:
        policy_version: The table's opaque policy version.
        n_channels: Number of channels.
        n_nodes: Number of scope-tree nodes.
        n_principals: Number of principals.
        n_grants: Number of grants.

    """

    policy_version: int
    n_channels: int
    n_nodes: int
    n_principals: int
    n_grants: int


def _describe(status: int) -> str:
    text: bytes = ffi.string(lib.mtr_strerror(status))
    return text.decode("ascii")


def _check_abi() -> None:
    """Refuse a compiled module whose codes or format constants differ from the Python side."""
    expected = {f"MTR_DENY_{v.name}": v.value for v in Verdict if v is not Verdict.ALLOW}
    expected["MTR_ALLOW"] = Verdict.ALLOW.value
    expected |= {f"MTR_E_{f.name}": f.value for f in TableFault}
    expected |= {
        "MTR_FORMAT_VERSION": table_format.FORMAT_VERSION,
        "MTR_HEADER_SIZE": table_format.HEADER_SIZE,
        "MTR_N_PERMISSIONS": table_format.N_PERMISSIONS,
        "MTR_MAX_CHANNELS": table_format.MAX_CHANNELS,
        "MTR_MAX_NODES": table_format.MAX_NODES,
        "MTR_MAX_PRINCIPALS": table_format.MAX_PRINCIPALS,
        "MTR_MAX_GRANTS": table_format.MAX_GRANTS,
        "MTR_NO_PARENT": table_format.NO_PARENT,
    }
    actual = {name: getattr(lib, name, None) for name in expected}
    if actual != expected:
        raise EvaluatorError("native evaluator codes or format constants do not match meterd.policy.table")


_check_abi()

# Index = C code; every byte that is not a verdict maps to BAD_TABLE.
_KNOWN_CODES = frozenset(v.value for v in Verdict)
_VERDICTS: tuple[Verdict, ...] = tuple(
    Verdict(code) if code in _KNOWN_CODES else Verdict.BAD_TABLE for code in range(256)
)


def verdicts(codes: bytes) -> list[Verdict]:
    """Turn the codes of :meth:`NativeEvaluator.decide_batch` into verdicts."""
    table = _VERDICTS
    return [table[code] for code in codes]


def _representable(request: RequestTuple) -> RequestTuple:
    if all(0 <= field <= U32_MAX for field in request):
        return request
    return _UNREPRESENTABLE


class RequestBatch:
    """Requests packed once into native memory, to be decided any number of times.

    Packing costs a few hundred nanoseconds per request; deciding a prepared
    batch then runs at nearly the speed of a C loop.  A batch is immutable.

    Args:
        requests: ``(principal, permission bit, resource node, channel)``
            tuples of ints.

    Raises:
        ValueError: When a request is not a 4-tuple.
        TypeError: When a field is not an int.

    """

    __slots__ = ("_cdata", "_length", "_words")

    def __init__(self, requests: Iterable[RequestTuple]) -> None:
        rows: Sequence[RequestTuple] = requests if isinstance(requests, list | tuple) else list(requests)
        if not set(map(len, rows)) <= {4}:
            raise ValueError("every request must be a (principal, permission, node, channel) tuple")
        try:
            words = array(_U32_CODE, chain.from_iterable(rows))
        except OverflowError:
            words = array(_U32_CODE, chain.from_iterable(map(_representable, rows)))
        self._words = words
        self._length = len(rows)
        # from_buffer keeps ``words`` alive and pins its size while referenced.
        self._cdata: Any = ffi.from_buffer("mtr_request[]", words)

    def __len__(self) -> int:
        return self._length


class NativeEvaluator:
    """Decides requests against one compiled table, in C.

    Args:
        table: The table bytes, as :func:`meterd.policy.table.pack_table`
            makes them.  A mutable buffer is copied first.

    Raises:
        TableRefusedError: When the table fails any check (size, version,
            bounds, ordering, masks, checksum).

    """

    __slots__ = ("_buffer", "_decide", "_decide_batch", "_handle", "_info", "_table")

    def __init__(self, table: bytes | bytearray | memoryview) -> None:
        data = bytes(table)
        buffer = ffi.from_buffer(data)
        handle = ffi.new("mtr_table *")
        status = lib.mtr_table_open(handle, buffer, len(data))
        if status != lib.MTR_OK:
            try:
                fault = TableFault(status)
            except ValueError:
                raise EvaluatorError(f"compiled policy refused: unknown status {status}") from None
            raise TableRefusedError(fault)
        self._table = data
        self._buffer: Any = buffer
        self._handle: Any = handle
        self._decide: Any = lib.mtr_decide
        self._decide_batch: Any = lib.mtr_decide_batch
        self._info = TableInfo(
            policy_version=handle.policy_version,
            n_channels=handle.n_channels,
            n_nodes=handle.n_nodes,
            n_principals=handle.n_principals,
            n_grants=handle.n_grants,
        )

    @property
    def info(self) -> TableInfo:
        """The policy version and counts read back from the table."""
        return self._info

    @property
    def policy_version(self) -> int:
        """The table's opaque policy version."""
        return self._info.policy_version

    def decide(self, principal: int, permission: int, node: int, channel: int) -> Verdict:
        """Decide one request.

        Args:
            principal: Principal index.
            permission: Permission bit (0..16).
            node: Resource node index in the scope tree.
            channel: Channel index.

        Returns:
            The verdict; only :attr:`Verdict.ALLOW` allows.  A field outside
            ``0 .. 2**32 - 1`` gives :attr:`Verdict.BAD_REQUEST`.

        Raises:
            TypeError: When a field is not an int.

        """
        try:
            code: int = self._decide(self._handle, principal, permission, node, channel)
        except OverflowError:
            return Verdict.BAD_REQUEST
        return _VERDICTS[code]

    def decide_batch(self, batch: RequestBatch) -> bytes:
        """Decide every request of a prepared batch in one C call.

        Args:
            batch: The requests.

        Returns:
            One C decision code per request, in order; ``Verdict.ALLOW``
            (0xA5) allows, anything else denies.  :func:`verdicts` turns the
            codes into :class:`Verdict` values.

        """
        n = batch._length
        out = ffi.new("uint8_t[]", n)
        # A non-zero status leaves every code BAD_TABLE, which denies.
        self._decide_batch(self._handle, batch._cdata, n, out)
        codes: bytes = ffi.buffer(out)[:]
        return codes

    def decide_many(self, requests: Iterable[RequestTuple]) -> list[Verdict]:
        """Decide a list of request tuples; a convenience over :meth:`decide_batch`.

        Raises:
            ValueError: When a request is not a 4-tuple.
            TypeError: When a field is not an int.

        """
        return verdicts(self.decide_batch(RequestBatch(requests)))
