"""How one register field's value becomes 16-bit words and back; no I/O.

Multi-word values are big-endian with the most significant word first (the
order mbpoll calls ``-B``), the usual order of meters' Modbus maps.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import struct

from meterd.errors import ChannelError

Value = int | float | str | bool


class EncodingError(ChannelError):
    """Written words do not encode a value of the field's kind (answered with exception 03)."""


class Kind(enum.Enum):
    """A field's wire type.

    Attributes:
        label: Name shown in the register map.
        words: Registers the field occupies.
    """

    label: str
    words: int

    U16 = ("u16", 1)
    U32 = ("u32", 2)
    U64 = ("u64", 4)
    F32 = ("f32", 2)
    IPV4 = ("ipv4", 2)
    ENUM = ("enum", 1)

    def __init__(self, label: str, words: int) -> None:
        self.label = label
        self.words = words


_F32 = struct.Struct(">f")


def _split(value: int, words: int) -> list[int]:
    return [(value >> (16 * (words - 1 - i))) & 0xFFFF for i in range(words)]


def _join(words: tuple[int, ...]) -> int:
    out = 0
    for word in words:
        out = (out << 16) | word
    return out


def encode(kind: Kind, value: Value, choices: tuple[Value, ...] = ()) -> list[int]:
    """Return the words of ``value``; out-of-range values saturate rather than wrap.

    Readings never exceed the registers' ranges in practice; saturating keeps
    a corrupt value from wrapping round to a plausible small one.
    """
    if kind is Kind.F32:
        (raw,) = struct.unpack(">I", _F32.pack(float(value)))
        return _split(raw, 2)
    if kind is Kind.IPV4:
        return _split(int(ipaddress.IPv4Address(str(value))), 2)
    if kind is Kind.ENUM:
        return [choices.index(value)]
    number = max(0, min(int(value), (1 << (16 * kind.words)) - 1))
    return _split(number, kind.words)


def decode(kind: Kind, words: tuple[int, ...], choices: tuple[Value, ...] = ()) -> Value:
    """Return the value ``words`` encode.

    Raises:
        EncodingError: A float that is not finite, or an enumeration index out of range.
    """
    if kind is Kind.F32:
        (number,) = _F32.unpack(struct.pack(">I", _join(words)))
        if not math.isfinite(number):
            raise EncodingError("not a finite number")
        return float(number)
    if kind is Kind.IPV4:
        return str(ipaddress.IPv4Address(_join(words)))
    if kind is Kind.ENUM:
        if words[0] >= len(choices):
            raise EncodingError(f"choice {words[0]} is not one of 0..{len(choices) - 1}")
        return choices[words[0]]
    return _join(words)
