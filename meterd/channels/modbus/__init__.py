"""The Modbus channel: plain Modbus TCP (anonymous) and Modbus/TCP Security (mutual TLS, roles).

Every request is decided by the guard: reads need ``fs_read_only`` on
``/modbus/unit/<id>``, writes the control permission of the register group
written.  A refusal is exception 01 and a security-log record; allowed reads
are counted rather than recorded one by one.  The register map is
:data:`~meterd.channels.modbus.registers.REGISTER_MAP`.
"""

from meterd.channels.modbus.config import ModbusConfig, TlsConfig, load
from meterd.channels.modbus.server import ModbusListener

__all__ = ["ModbusConfig", "ModbusListener", "TlsConfig", "load"]
