"""meterd: the access-control daemon of an electricity meter's controller.

Every way a person or program reaches the meter (SSH, SFTP, serial console,
front panel, Modbus) becomes a request that one guard decides by role and
permission, and every decision is recorded in a tamper-evident security log.
"""

__version__ = "0.1.0"
