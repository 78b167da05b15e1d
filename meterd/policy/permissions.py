"""The meter's 17 permissions: stable identifiers, bits, names and descriptions.

Invariants:
    * Bit numbers are part of the compiled-table format and of every policy
      pushed to a fleet: they never change between releases.  A new permission
      takes the next free bit; a withdrawn one keeps its bit reserved.
    * Display names and descriptions are worded exactly as the meter's
      documentation words them.
"""

from __future__ import annotations

import enum

from meterd.record import record


@record
class PermissionInfo:
    """The documented face of one permission.

    Attributes:
        bit: Stable bit number in compiled masks.
        display_name: The name the meter documentation uses.
        description: The documentation's description, verbatim.

    """

    bit: int
    display_name: str
    description: str


#: The stable bit of each permission identifier: the one table that fixes them.
STABLE_BITS: dict[str, int] = {
    "certificate_management": 0,
    "comm_config": 1,
    "dss_config": 2,
    "fs_read_write": 3,
    "fs_read_only": 4,
    "firmware_management": 5,
    "front_panel_config": 6,
    "front_panel_restart": 7,
    "ion_module_config": 8,
    "master_reset": 9,
    "password_self_management": 10,
    "peak_demand_reset": 11,
    "security_logs_access": 12,
    "terminal_access": 13,
    "test_mode_toggle": 14,
    "time_sync": 15,
    "user_management": 16,
}


class Permission(enum.Enum):
    """One of the meter's permissions; the value is its stable identifier.

    Attributes:
        bit: The stable bit number (a plain attribute: it is read on every decision).
        mask: ``1 << bit``.

    """

    bit: int
    mask: int

    CERTIFICATE_MANAGEMENT = "certificate_management"
    COMM_CONFIG = "comm_config"
    DSS_CONFIG = "dss_config"
    FS_READ_WRITE = "fs_read_write"
    FS_READ_ONLY = "fs_read_only"
    FIRMWARE_MANAGEMENT = "firmware_management"
    FRONT_PANEL_CONFIG = "front_panel_config"
    FRONT_PANEL_RESTART = "front_panel_restart"
    ION_MODULE_CONFIG = "ion_module_config"
    MASTER_RESET = "master_reset"
    PASSWORD_SELF_MANAGEMENT = "password_self_management"  # noqa: S105 - a permission name, not a secret
    PEAK_DEMAND_RESET = "peak_demand_reset"
    SECURITY_LOGS_ACCESS = "security_logs_access"
    TERMINAL_ACCESS = "terminal_access"
    TEST_MODE_TOGGLE = "test_mode_toggle"
    TIME_SYNC = "time_sync"
    USER_MANAGEMENT = "user_management"

    def __init__(self, identifier: str) -> None:
        self.bit = STABLE_BITS[identifier]
        self.mask = 1 << self.bit

    # Members are singletons compared by identity; hashing by identity keeps
    # dictionary lookups on the decision path cheap.
    __hash__ = object.__hash__

    @property
    def info(self) -> PermissionInfo:
        """The permission's bit, display name and description."""
        return CATALOGUE[self]


CATALOGUE: dict[Permission, PermissionInfo] = {
    Permission.CERTIFICATE_MANAGEMENT: PermissionInfo(
        STABLE_BITS["certificate_management"],
        "Certificate Management",
        "Upload and manage digital certificates to help ensure secure communication.",
    ),
    Permission.COMM_CONFIG: PermissionInfo(
        STABLE_BITS["comm_config"],
        "Comm Config",
        "Configure communication modules, including protocols, baud rates, and network settings.",
    ),
    Permission.DSS_CONFIG: PermissionInfo(
        STABLE_BITS["dss_config"], "DSS Config", "Update the Specific Settings Values using CAE."
    ),
    Permission.FS_READ_WRITE: PermissionInfo(
        STABLE_BITS["fs_read_write"],
        "File System Read and Write Access",
        "Read and write access to the meter’s file system using SFTP.",
    ),
    Permission.FS_READ_ONLY: PermissionInfo(
        STABLE_BITS["fs_read_only"],
        "File System Read-Only Access",
        "Read-only access to the meter’s file system using SFTP.",
    ),
    Permission.FIRMWARE_MANAGEMENT: PermissionInfo(
        STABLE_BITS["firmware_management"],
        "Firmware Management",
        "Install and manage firmware, including device templates.",
    ),
    Permission.FRONT_PANEL_CONFIG: PermissionInfo(
        STABLE_BITS["front_panel_config"],
        "Front Panel Config",
        "Make configuration changes using the front panel.",
    ),
    Permission.FRONT_PANEL_RESTART: PermissionInfo(
        STABLE_BITS["front_panel_restart"], "Front Panel Restart", "Restart the meter from the front panel."
    ),
    Permission.ION_MODULE_CONFIG: PermissionInfo(
        STABLE_BITS["ion_module_config"],
        "ION Module Config",
        "Configure ION modules, which are used to build custom logic and data processing within the meter.",
    ),
    Permission.MASTER_RESET: PermissionInfo(
        STABLE_BITS["master_reset"],
        "Master Reset",
        "Clear all accumulated energy values, logs, and waveforms.",
    ),
    Permission.PASSWORD_SELF_MANAGEMENT: PermissionInfo(
        STABLE_BITS["password_self_management"],
        "Password Self-Management",
        "Users can change their own passwords without administrator assistance.",
    ),
    Permission.PEAK_DEMAND_RESET: PermissionInfo(
        STABLE_BITS["peak_demand_reset"],
        "Peak Demand Reset",
        "Reset peak demand measurements. A configurable lockout period helps ensure resets are not "
        "performed too frequently.",
    ),
    Permission.SECURITY_LOGS_ACCESS: PermissionInfo(
        STABLE_BITS["security_logs_access"],
        "Security Logs Access",
        "View logs related to security events, such as login attempts, configuration changes, and "
        "authentication issues.",
    ),
    Permission.TERMINAL_ACCESS: PermissionInfo(
        STABLE_BITS["terminal_access"],
        "Terminal Access",
        "Access the terminal using SSH or a serial console and run commands.",
    ),
    Permission.TEST_MODE_TOGGLE: PermissionInfo(
        STABLE_BITS["test_mode_toggle"],
        "Test Mode Toggle",
        "Enable or disable test mode to help ensure meter functionality without affecting billing data.",
    ),
    Permission.TIME_SYNC: PermissionInfo(
        STABLE_BITS["time_sync"],
        "Time Synchronization",
        "Configure time sync settings to help ensure the internal clock aligns with external sources.",
    ),
    Permission.USER_MANAGEMENT: PermissionInfo(
        STABLE_BITS["user_management"],
        "User Management",
        "Create, modify, and delete user accounts and roles, assign permissions, and manage credentials.",
    ),
}

#: Every permission bit set; masks never carry bits outside it.
ALL_PERMISSIONS_MASK = sum(1 << info.bit for info in CATALOGUE.values())

BY_ID: dict[str, Permission] = {p.value: p for p in Permission}
BY_BIT: dict[int, Permission] = {info.bit: p for p, info in CATALOGUE.items()}


def mask_of(permissions: frozenset[Permission] | set[Permission]) -> int:
    """Return the bit mask of a set of permissions."""
    mask = 0
    for permission in permissions:
        mask |= permission.mask
    return mask


def permissions_of(mask: int) -> frozenset[Permission]:
    """Return the permissions whose bits are set in ``mask``."""
    return frozenset(p for bit, p in BY_BIT.items() if mask >> bit & 1)
