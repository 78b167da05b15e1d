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
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
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


class Permission(enum.Enum):
    """One of the meter's permissions; the value is its stable identifier."""

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
    PASSWORD_SELF_MANAGEMENT = "password_self_management"
    PEAK_DEMAND_RESET = "peak_demand_reset"
    SECURITY_LOGS_ACCESS = "security_logs_access"
    TERMINAL_ACCESS = "terminal_access"
    TEST_MODE_TOGGLE = "test_mode_toggle"
    TIME_SYNC = "time_sync"
    USER_MANAGEMENT = "user_management"

    @property
    def info(self) -> PermissionInfo:
        """The permission's bit, display name and description."""
        return CATALOGUE[self]

    @property
    def bit(self) -> int:
        """The stable bit number."""
        return CATALOGUE[self].bit

    @property
    def mask(self) -> int:
        """``1 << bit``."""
        return 1 << CATALOGUE[self].bit


CATALOGUE: dict[Permission, PermissionInfo] = {
    Permission.CERTIFICATE_MANAGEMENT: PermissionInfo(
        0, "Certificate Management",
        "Upload and manage digital certificates to help ensure secure communication."),
    Permission.COMM_CONFIG: PermissionInfo(
        1, "Comm Config",
        "Configure communication modules, including protocols, baud rates, and network settings."),
    Permission.DSS_CONFIG: PermissionInfo(
        2, "DSS Config", "Update the Specific Settings Values using CAE."),
    Permission.FS_READ_WRITE: PermissionInfo(
        3, "File System Read and Write Access",
        "Read and write access to the meter’s file system using SFTP."),
    Permission.FS_READ_ONLY: PermissionInfo(
        4, "File System Read-Only Access", "Read-only access to the meter’s file system using SFTP."),
    Permission.FIRMWARE_MANAGEMENT: PermissionInfo(
        5, "Firmware Management", "Install and manage firmware, including device templates."),
    Permission.FRONT_PANEL_CONFIG: PermissionInfo(
        6, "Front Panel Config", "Make configuration changes using the front panel."),
    Permission.FRONT_PANEL_RESTART: PermissionInfo(
        7, "Front Panel Restart", "Restart the meter from the front panel."),
    Permission.ION_MODULE_CONFIG: PermissionInfo(
        8, "ION Module Config",
        "Configure ION modules, which are used to build custom logic and data processing within the meter."),
    Permission.MASTER_RESET: PermissionInfo(
        9, "Master Reset", "Clear all accumulated energy values, logs, and waveforms."),
    Permission.PASSWORD_SELF_MANAGEMENT: PermissionInfo(
        10, "Password Self-Management",
        "Users can change their own passwords without administrator assistance."),
    Permission.PEAK_DEMAND_RESET: PermissionInfo(
        11, "Peak Demand Reset",
        "Reset peak demand measurements. A configurable lockout period helps ensure resets are not "
        "performed too frequently."),
    Permission.SECURITY_LOGS_ACCESS: PermissionInfo(
        12, "Security Logs Access",
        "View logs related to security events, such as login attempts, configuration changes, and "
        "authentication issues."),
    Permission.TERMINAL_ACCESS: PermissionInfo(
        13, "Terminal Access", "Access the terminal using SSH or a serial console and run commands."),
    Permission.TEST_MODE_TOGGLE: PermissionInfo(
        14, "Test Mode Toggle",
        "Enable or disable test mode to help ensure meter functionality without affecting billing data."),
    Permission.TIME_SYNC: PermissionInfo(
        15, "Time Synchronization",
        "Configure time sync settings to help ensure the internal clock aligns with external sources."),
    Permission.USER_MANAGEMENT: PermissionInfo(
        16, "User Management",
        "Create, modify, and delete user accounts and roles, assign permissions, and manage credentials."),
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
