"""The shell's command table: command words → permission, resource, handler, usage.

The table is the one place a command's permission is named; the shell asks
the guard for it before the handler runs.  ``exit`` is the only command
without one.  The README's command table is rendered from this one
(:mod:`meterd.shell.reference`).
"""

from __future__ import annotations

from collections.abc import Sequence

from meterd.policy.permissions import Permission
from meterd.shell import approval_cmds, log_cmds, meter_cmds, session_cmds, user_cmds
from meterd.shell.command import Command
from meterd.shell.context import Context
from meterd.shell.terminal import EXIT_OK

P = Permission


async def _help(ctx: Context) -> int:
    # The guard answers from the policy in force, so the list matches what would be allowed.
    guard = ctx.runtime.guard
    approver = bool(guard.permitted(ctx.session) & guard.policy.constraints.dual_control)
    cache: dict[str, frozenset[Permission]] = {}
    rows = []
    for command in COMMANDS:
        if command.approver and not approver:
            continue
        if command.permission is not None:
            granted = cache.get(command.resource)
            if granted is None:
                granted = cache[command.resource] = guard.permitted(ctx.session, command.resource)
            if command.permission not in granted:
                continue
        rows.append((command.usage, command.summary))
    await ctx.table(("command", "description"), rows)
    return EXIT_OK


KV = "KEY=VALUE..."
COMMANDS: tuple[Command, ...] = (
    Command(("help",), P.TERMINAL_ACCESS, "/", _help, summary="list the commands you may run"),
    Command(
        ("whoami",), P.TERMINAL_ACCESS, "/", session_cmds.whoami, summary="your user, roles and permissions"
    ),
    Command(
        ("show", "readings"),
        P.TERMINAL_ACCESS,
        "/meter",
        meter_cmds.show_readings,
        summary="current measurements",
    ),
    Command(
        ("show", "status"),
        P.TERMINAL_ACCESS,
        "/meter",
        meter_cmds.show_status,
        summary="meter identity and state",
    ),
    Command(
        ("show", "settings"),
        P.TERMINAL_ACCESS,
        "/meter/settings",
        meter_cmds.show_settings,
        summary="setting values and ION modules",
    ),
    Command(
        ("show", "comm"),
        P.TERMINAL_ACCESS,
        "/meter/comm",
        meter_cmds.show_comm,
        summary="communication settings",
    ),
    Command(("show", "time"), P.TERMINAL_ACCESS, "/meter/clock", meter_cmds.show_time, summary="meter clock"),
    Command(
        ("demand", "reset"),
        P.PEAK_DEMAND_RESET,
        "/meter/demand",
        meter_cmds.demand_reset,
        summary="reset the peak demand",
    ),
    Command(
        ("test-mode",),
        P.TEST_MODE_TOGGLE,
        "/meter",
        meter_cmds.test_mode,
        "on|off",
        "enter or leave test mode",
        1,
        1,
        check=meter_cmds.check_test_mode,
    ),
    Command(
        ("time", "set"),
        P.TIME_SYNC,
        "/meter/clock",
        meter_cmds.time_set,
        "TIME",
        "set the clock (ISO 8601 or POSIX seconds)",
        1,
        1,
        check=meter_cmds.check_time_set,
    ),
    Command(
        ("comm", "set"),
        P.COMM_CONFIG,
        "/meter/comm",
        meter_cmds.comm_set,
        KV,
        "change communication settings",
        1,
        None,
        check=meter_cmds.check_key_values,
    ),
    Command(
        ("settings", "set"),
        P.DSS_CONFIG,
        "/meter/settings",
        meter_cmds.settings_set,
        KV,
        "change setting values",
        1,
        None,
        check=meter_cmds.check_key_values,
    ),
    Command(
        ("module", "set"),
        P.ION_MODULE_CONFIG,
        "/meter/modules",
        meter_cmds.module_set,
        "MODULE " + KV,
        "change an ION module",
        2,
        None,
        check=meter_cmds.check_module_set,
    ),
    Command(
        ("firmware", "install"),
        P.FIRMWARE_MANAGEMENT,
        "/meter/firmware",
        meter_cmds.firmware_install,
        "FILE",
        "install an image uploaded to /firmware",
        1,
        1,
        check=meter_cmds.check_firmware_install,
    ),
    Command(
        ("cert", "list"),
        P.CERTIFICATE_MANAGEMENT,
        "/meter/certificates",
        meter_cmds.cert_list,
        summary="installed certificates",
    ),
    Command(
        ("cert", "install"),
        P.CERTIFICATE_MANAGEMENT,
        "/meter/certificates",
        meter_cmds.cert_install,
        "FILE",
        "install a PEM certificate uploaded to /certs",
        1,
        1,
        check=meter_cmds.check_cert_install,
    ),
    Command(
        ("cert", "remove"),
        P.CERTIFICATE_MANAGEMENT,
        "/meter/certificates",
        meter_cmds.cert_remove,
        "FINGERPRINT",
        "remove a certificate",
        1,
        1,
        check=meter_cmds.check_cert_remove,
    ),
    Command(
        ("master-reset",),
        P.MASTER_RESET,
        "/meter",
        meter_cmds.master_reset,
        summary="clear energy, demand and measurement files",
    ),
    Command(
        ("passwd",),
        P.PASSWORD_SELF_MANAGEMENT,
        "/meter/users",
        user_cmds.passwd,
        summary="change your password",
    ),
    Command(("user", "list"), P.USER_MANAGEMENT, "/meter/users", user_cmds.user_list, summary="list users"),
    Command(
        ("user", "add"),
        P.USER_MANAGEMENT,
        "/meter/users",
        user_cmds.user_add,
        "NAME ROLE[,ROLE...] [KEYTYPE KEYDATA]",
        "add a user",
        2,
        4,
        check=user_cmds.check_user_add,
    ),
    Command(
        ("user", "remove"),
        P.USER_MANAGEMENT,
        "/meter/users",
        user_cmds.user_remove,
        "NAME",
        "remove a user",
        1,
        1,
        check=user_cmds.check_user,
    ),
    Command(
        ("user", "roles"),
        P.USER_MANAGEMENT,
        "/meter/users",
        user_cmds.user_roles,
        "NAME ROLE[,ROLE...]",
        "set a user's roles",
        2,
        2,
        check=user_cmds.check_user,
    ),
    Command(
        ("user", "unlock"),
        P.USER_MANAGEMENT,
        "/meter/users",
        user_cmds.user_unlock,
        "NAME",
        "clear a login lockout",
        1,
        1,
    ),
    Command(
        ("user", "reset-password"),
        P.USER_MANAGEMENT,
        "/meter/users",
        user_cmds.user_reset_password,
        "NAME",
        "set a user's password",
        1,
        1,
        check=user_cmds.check_user,
    ),
    Command(
        ("user", "reset-pin"),
        P.USER_MANAGEMENT,
        "/meter/users",
        user_cmds.user_reset_pin,
        "NAME",
        "set a user's front-panel PIN",
        1,
        1,
        check=user_cmds.check_user,
    ),
    Command(
        ("user", "key"),
        P.USER_MANAGEMENT,
        "/meter/users",
        user_cmds.user_key,
        "NAME ACTION KEYTYPE KEYDATA",
        "ACTION add or remove: change a user's SSH keys",
        4,
        5,
        check=user_cmds.check_user_key,
    ),
    Command(
        ("log", "checkpoint"),
        P.SECURITY_LOGS_ACCESS,
        "/files/security-log",
        log_cmds.log_checkpoint,
        summary="write a checkpoint record of the security log's head now",
    ),
    Command(
        ("log", "show"),
        P.SECURITY_LOGS_ACCESS,
        "/files/security-log",
        log_cmds.log_show,
        "[limit=N] [user=NAME] [event=TYPE]",
        "show security-log records",
        0,
        3,
        check=log_cmds.check_log_show,
    ),
    Command(
        ("log", "verify"),
        P.SECURITY_LOGS_ACCESS,
        "/files/security-log",
        log_cmds.log_verify,
        summary="check the security log's chain",
    ),
    Command(
        ("log", "acknowledge"),
        P.SECURITY_LOGS_ACCESS,
        "/files/security-log",
        log_cmds.log_acknowledge,
        "SEQ",
        "mark records up to SEQ as taken off the meter (you hold a copy)",
        1,
        1,
        check=log_cmds.check_log_acknowledge,
    ),
    Command(
        ("approvals",),
        P.TERMINAL_ACCESS,
        "/",
        approval_cmds.approvals,
        summary="dual-control requests you could approve",
        approver=True,
    ),
    # The guard decides approvals itself: the approver needs the requested permission.
    Command(
        ("approve",),
        P.TERMINAL_ACCESS,
        "/",
        approval_cmds.approve,
        "ID",
        "approve someone's dual-control request (needs its permission)",
        1,
        1,
        check=approval_cmds.check_request_number,
        approver=True,
    ),
    Command(
        ("reject",),
        P.TERMINAL_ACCESS,
        "/",
        approval_cmds.reject,
        "ID",
        "reject someone's dual-control request (needs its permission)",
        1,
        1,
        check=approval_cmds.check_request_number,
        approver=True,
    ),
    Command(("exit",), None, "/", session_cmds.exit_session, summary="end the session"),
)


def find(words: Sequence[str]) -> tuple[Command, Sequence[str]] | None:
    """Return the command whose words start ``words`` (longest match) and the remaining arguments."""
    best: Command | None = None
    for command in COMMANDS:
        n = len(command.words)
        if tuple(words[:n]) == command.words and (best is None or n > len(best.words)):
            best = command
    if best is None:
        return None
    return best, words[len(best.words) :]
