"""The built-in IEC 62351-8 roles, mapped onto the meter's 17 permissions.

These roles are immutable: a policy file cannot redefine or delete them.  The
reasoning for each mapping is in the README's built-in role table; the short
form is in each role's description.
"""

from __future__ import annotations

from meterd.policy.model import Role
from meterd.policy.permissions import Permission

_VIEW = frozenset({Permission.TERMINAL_ACCESS, Permission.FS_READ_ONLY, Permission.PASSWORD_SELF_MANAGEMENT})

BUILTIN_ROLES: tuple[Role, ...] = (
    Role("viewer", _VIEW, "Sees readings, status and measurement files; changes nothing.", 0),
    Role(
        "operator",
        _VIEW | {Permission.PEAK_DEMAND_RESET, Permission.FRONT_PANEL_RESTART},
        "Viewer plus the routine operating actions: demand reset and restart.",
        1,
    ),
    Role(
        "engineer",
        _VIEW
        | {
            Permission.FS_READ_WRITE,
            Permission.COMM_CONFIG,
            Permission.DSS_CONFIG,
            Permission.ION_MODULE_CONFIG,
            Permission.FRONT_PANEL_CONFIG,
            Permission.TEST_MODE_TOGGLE,
            Permission.TIME_SYNC,
        },
        "Configures the meter's function (settings, modules, comms, clock, test mode); no security.",
        2,
    ),
    Role(
        "installer",
        _VIEW
        | {
            Permission.FS_READ_WRITE,
            Permission.FIRMWARE_MANAGEMENT,
            Permission.COMM_CONFIG,
            Permission.TIME_SYNC,
            Permission.FRONT_PANEL_CONFIG,
            Permission.FRONT_PANEL_RESTART,
            Permission.MASTER_RESET,
        },
        "Commissions the meter: firmware, comms, clock and the master reset before service.",
        3,
    ),
    Role(
        "secadm",
        frozenset(
            {
                Permission.CERTIFICATE_MANAGEMENT,
                Permission.TERMINAL_ACCESS,
                Permission.PASSWORD_SELF_MANAGEMENT,
            }
        ),
        "Manages the meter's security credentials (certificates); neither users nor logs.",
        4,
    ),
    Role(
        "secaud",
        frozenset(
            {
                Permission.SECURITY_LOGS_ACCESS,
                Permission.TERMINAL_ACCESS,
                Permission.FS_READ_ONLY,
                Permission.PASSWORD_SELF_MANAGEMENT,
            }
        ),
        "Reads the security log and nothing it could change; the only role with log access.",
        5,
    ),
    Role(
        "rbacmnt",
        frozenset(
            {Permission.USER_MANAGEMENT, Permission.TERMINAL_ACCESS, Permission.PASSWORD_SELF_MANAGEMENT}
        ),
        "Manages users and role assignments; cannot read the security log that records it.",
        6,
    ),
)

BUILTIN_BY_NAME: dict[str, Role] = {r.name: r for r in BUILTIN_ROLES}
