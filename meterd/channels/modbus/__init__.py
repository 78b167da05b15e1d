"""The Modbus channel: plain Modbus TCP (anonymous) and Modbus/TCP Security (mutual TLS, roles).

Every request is decided by the guard: reads need ``fs_read_only`` on
``/modbus/unit/<id>``, writes the control permission of the register group
written.  A refusal is exception 01 and a security-log record; allowed reads
are counted rather than recorded one by one.  The register map is
:data:`~meterd.channels.modbus.registers.REGISTER_MAP`.

:class:`ModbusListener` is imported on first use, so reading the daemon's
configuration (which needs :data:`LOADER`) does not load the server and its
TLS and X.509 dependencies on a meter that runs no Modbus.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterd.channels.modbus.config import LOADER, ModbusConfig, TlsConfig

if TYPE_CHECKING:
    from meterd.channels.modbus.listener import ModbusListener

__all__ = ["LOADER", "ModbusConfig", "ModbusListener", "TlsConfig"]


def __getattr__(name: str) -> object:
    if name == "ModbusListener":
        from meterd.channels.modbus.listener import ModbusListener  # noqa: PLC0415 - see module docstring

        return ModbusListener
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
