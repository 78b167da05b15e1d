"""Modbus TCP framing (MBAP) and the PDUs meterd serves; no I/O.

An application data unit is the 7-byte MBAP header (transaction id, protocol
id 0, length, unit id) followed by a PDU of at most 253 bytes (function code
and data).  The same framing runs inside TLS for Modbus/TCP Security.

Two kinds of bad input, handled differently:
    * A header that cannot be Modbus (protocol id not 0, length outside
      2..254) raises :class:`FramingError`: the byte stream has lost its
      framing and the connection must be closed.
    * A well-framed PDU that is wrong for its function (length, count, byte
      count) or uses a function meterd does not serve becomes an exception
      response (codes 01 and 03), as the Modbus application protocol says.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable

from meterd.errors import ChannelError
from meterd.record import record

MBAP_SIZE = 7
MAX_PDU = 253
#: The MBAP length field counts the unit id and the PDU.
MAX_MBAP_LENGTH = MAX_PDU + 1
MAX_READ_COUNT = 125
MAX_WRITE_COUNT = 123
ADDRESS_SPACE = 0x10000

READ_HOLDING = 0x03
READ_INPUT = 0x04
WRITE_SINGLE = 0x06
WRITE_MULTIPLE = 0x10
READ_FUNCTIONS = frozenset({READ_HOLDING, READ_INPUT})
WRITE_FUNCTIONS = frozenset({WRITE_SINGLE, WRITE_MULTIPLE})

#: The MBAP header: transaction id, protocol id, length, unit id.
MBAP = struct.Struct(">HHHB")
_ADDRESS_COUNT = struct.Struct(">HH")


class ExceptionCode(enum.IntEnum):
    """Modbus exception codes meterd answers with."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04
    GATEWAY_TARGET_FAILED = 0x0B


class FramingError(ChannelError):
    """The byte stream is not Modbus TCP framing; the connection must close."""


@record
class Header:
    """A decoded MBAP header.

    Attributes:
        transaction: Transaction id, echoed in the response.
        pdu_length: Bytes of PDU that follow the header (1..253).
        unit: Unit id the request is for.
    """

    transaction: int
    pdu_length: int
    unit: int


@record
class ReadRequest:
    """Read holding (03) or input (04) registers.

    Attributes:
        function: 3 or 4.
        address: First register (0-based PDU address).
        count: Registers to read (1..125).
    """

    function: int
    address: int
    count: int


@record
class WriteRequest:
    """Write one (06) or several (16) holding registers.

    Attributes:
        function: 6 or 16.
        address: First register.
        values: The 16-bit words, in address order.
    """

    function: int
    address: int
    values: tuple[int, ...]

    @property
    def count(self) -> int:
        """Registers written."""
        return len(self.values)


@record
class Refusal:
    """A request answered with an exception before anything else looks at it.

    Attributes:
        function: The request's function code.
        code: The exception to answer with.
        why: Short reason, for counters and debug logs.
    """

    function: int
    code: ExceptionCode
    why: str


Request = ReadRequest | WriteRequest


def parse_header(raw: bytes) -> Header:
    """Decode a 7-byte MBAP header.

    Raises:
        FramingError: Protocol id not 0, or a length that cannot hold a PDU.
    """
    transaction, protocol, length, unit = MBAP.unpack(raw)
    if protocol != 0:
        raise FramingError(f"protocol id {protocol} is not Modbus")
    if not 2 <= length <= MAX_MBAP_LENGTH:
        raise FramingError(f"MBAP length {length} outside 2..{MAX_MBAP_LENGTH}")
    return Header(transaction, length - 1, unit)


def _parse_read(function: int, data: bytes) -> Request | Refusal:
    if len(data) != _ADDRESS_COUNT.size:
        return Refusal(function, ExceptionCode.ILLEGAL_DATA_VALUE, "bad_length")
    address, count = _ADDRESS_COUNT.unpack(data)
    if not 1 <= count <= MAX_READ_COUNT:
        return Refusal(function, ExceptionCode.ILLEGAL_DATA_VALUE, "bad_count")
    return ReadRequest(function, address, count)


def _parse_write_single(function: int, data: bytes) -> Request | Refusal:
    if len(data) != _ADDRESS_COUNT.size:
        return Refusal(function, ExceptionCode.ILLEGAL_DATA_VALUE, "bad_length")
    address, value = _ADDRESS_COUNT.unpack(data)
    return WriteRequest(function, address, (value,))


def _parse_write_multiple(function: int, data: bytes) -> Request | Refusal:
    if len(data) < _ADDRESS_COUNT.size + 1:
        return Refusal(function, ExceptionCode.ILLEGAL_DATA_VALUE, "bad_length")
    address, count = _ADDRESS_COUNT.unpack_from(data)
    byte_count = data[4]
    if not 1 <= count <= MAX_WRITE_COUNT or byte_count != 2 * count or len(data) != 5 + byte_count:
        return Refusal(function, ExceptionCode.ILLEGAL_DATA_VALUE, "bad_count")
    return WriteRequest(function, address, tuple(struct.unpack_from(f">{count}H", data, 5)))


#: The functions meterd serves; any other is exception 01.
_PARSERS: dict[int, Callable[[int, bytes], Request | Refusal]] = {
    READ_HOLDING: _parse_read,
    READ_INPUT: _parse_read,
    WRITE_SINGLE: _parse_write_single,
    WRITE_MULTIPLE: _parse_write_multiple,
}


def parse_request(pdu: bytes) -> Request | Refusal:
    """Decode a PDU (at least the function code) into a request, or the exception that answers it."""
    parser = _PARSERS.get(pdu[0])
    if parser is None:
        return Refusal(pdu[0], ExceptionCode.ILLEGAL_FUNCTION, "unsupported_function")
    return parser(pdu[0], pdu[1:])


def frame(header: Header, pdu: bytes) -> bytes:
    """Return the response ADU carrying ``pdu`` for the request ``header``."""
    return MBAP.pack(header.transaction, 0, len(pdu) + 1, header.unit) + pdu


def exception_pdu(function: int, code: ExceptionCode) -> bytes:
    """Return an exception response PDU."""
    return bytes(((function | 0x80) & 0xFF, code))


def read_response_pdu(function: int, words: list[int]) -> bytes:
    """Return the response PDU of a register read."""
    return bytes((function, 2 * len(words))) + struct.pack(f">{len(words)}H", *words)


def write_response_pdu(request: WriteRequest) -> bytes:
    """Return the response PDU of a register write (echo of address and value or count)."""
    second = request.values[0] if request.function == WRITE_SINGLE else request.count
    return bytes((request.function,)) + _ADDRESS_COUNT.pack(request.address, second)
