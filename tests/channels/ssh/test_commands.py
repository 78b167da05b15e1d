"""Every meter-shell command, allowed and denied per permission, through the real ``ssh`` client."""

from __future__ import annotations

import secrets
import threading
import time

import pytest

from meterd.meter.firmware import build_image
from meterd.seclog import EventType, Record
from tests.certs import make_certificate, pem_of
from tests.channels.ssh.harness import PASSWORD, Server, area

NEW_PASSWORD = "Staple-7-" + secrets.token_urlsafe(12)  # made per run: no credential in the tree


def decisions(records: list[Record], principal: str) -> list[Record]:
    return [r for r in records if r.principal == principal and r.permission]


def run(server: Server, user: str, command: str, stdin: str = "") -> tuple[int, str, list[Record]]:
    mark = server.mark()
    result = server.ssh(user, command, stdin=stdin)
    return result.returncode, result.stdout + result.stderr, server.since(mark)


ALLOWED = [
    ("viewer1", "help", "terminal_access", EventType.ACCESS_DECISION, "show readings"),
    ("viewer1", "whoami", "terminal_access", EventType.ACCESS_DECISION, "roles: viewer"),
    ("viewer1", "show readings", "terminal_access", EventType.ACCESS_DECISION, "energy_import_kwh: "),
    ("viewer1", "show status", "terminal_access", EventType.ACCESS_DECISION, "serial_number: SIM-0001"),
    ("viewer1", "show settings", "terminal_access", EventType.ACCESS_DECISION, "demand_interval_min: "),
    ("viewer1", "show comm", "terminal_access", EventType.ACCESS_DECISION, "modbus_unit_id: "),
    ("viewer1", "show time", "terminal_access", EventType.ACCESS_DECISION, "meter_time: "),
    ("viewer1", "approvals", "terminal_access", EventType.ACCESS_DECISION, "id  requester"),
    ("engineer1", "test-mode on", "test_mode_toggle", EventType.VALUE_FORCING, "test_mode: yes"),
    ("engineer1", "test-mode off", "test_mode_toggle", EventType.VALUE_FORCING, "test_mode: no"),
    (
        "engineer1",
        "time set 2026-11-22T12:00:00Z",
        "time_sync",
        EventType.TIME_CHANGE,
        "meter_time: 2026-11-22T12:00",
    ),
    ("engineer1", "comm set modbus_unit_id=7", "comm_config", EventType.CONFIG_CHANGE, "modbus_unit_id: 7"),
    (
        "engineer1",
        "settings set demand_interval_min=30",
        "dss_config",
        EventType.CONFIG_CHANGE,
        "demand_interval_min: 30",
    ),
    (
        "engineer1",
        "module set setpoint_1 enabled=on",
        "ion_module_config",
        EventType.CONFIG_CHANGE,
        "enabled: yes",
    ),
    ("secadm1", "cert list", "certificate_management", EventType.CONFIG_CHANGE, "fingerprint"),
    ("admin", "user list", "user_management", EventType.CONFIG_CHANGE, "viewer1"),
    ("auditor", "log show limit=5", "security_logs_access", EventType.AUDIT_LOG_ACCESS, "login_success"),
    ("auditor", "log verify", "security_logs_access", EventType.AUDIT_LOG_ACCESS, "status: ok"),
    ("auditor", "log checkpoint", "security_logs_access", EventType.AUDIT_LOG_ACCESS, "checkpoint_seq: "),
]


@pytest.mark.parametrize(("user", "command", "permission", "event", "expected"), ALLOWED)
def test_a_permitted_command_runs_and_is_recorded(
    server: Server, user: str, command: str, permission: str, event: EventType, expected: str
) -> None:
    status, output, records = run(server, user, command)
    assert status == 0, output
    assert expected in output
    mine = decisions(records, user)
    assert any(
        r.permission == permission and r.event is event and r.outcome.value == "allow" for r in mine
    ), mine
    assert "\t" not in output


DENIED = [
    ("viewer1", "demand reset", "peak_demand_reset"),
    ("viewer1", "test-mode on", "test_mode_toggle"),
    ("viewer1", "time set 2026-11-22T12:00:00Z", "time_sync"),
    ("viewer1", "comm set modbus_unit_id=9", "comm_config"),
    ("viewer1", "settings set demand_interval_min=5", "dss_config"),
    ("viewer1", "module set setpoint_1 enabled=on", "ion_module_config"),
    ("engineer1", "firmware install fw-9.bin", "firmware_management"),
    ("viewer1", "cert list", "certificate_management"),
    ("engineer1", "cert install x.pem", "certificate_management"),
    ("viewer1", "cert remove 0123456789abcdef", "certificate_management"),
    ("engineer1", "master-reset", "master_reset"),
    ("termonly", "passwd", "password_self_management"),
    ("secadm1", "user list", "user_management"),
    ("viewer1", "user add eve viewer", "user_management"),
    ("viewer1", "user remove viewer1", "user_management"),
    ("viewer1", "user roles viewer1 installer", "user_management"),
    ("viewer1", "user unlock lockme", "user_management"),
    ("viewer1", "user reset-password admin", "user_management"),
    ("admin", "log show", "security_logs_access"),
    ("viewer1", "log verify", "security_logs_access"),
    ("secadm1", "log checkpoint", "security_logs_access"),
]


@pytest.mark.parametrize(("user", "command", "permission"), DENIED)
def test_a_command_without_its_permission_is_denied_and_recorded(
    server: Server, user: str, command: str, permission: str
) -> None:
    status, output, records = run(server, user, command)
    assert status == 1, output
    assert f"denied: {permission} (" in output
    denied = [r for r in decisions(records, user) if r.event is EventType.PERMISSION_DENIED]
    assert [r.permission for r in denied] == [permission]
    assert denied[0].detail["command"] == " ".join(command.split()[:2]) or denied[0].detail["command"]


def test_log_checkpoint_seals_the_head_for_a_holder_of_security_logs_access_only(server: Server) -> None:
    status, output, records = run(server, "secadm1", "log checkpoint")
    assert status == 1, output
    assert not [r for r in records if r.event is EventType.LOG_CHECKPOINT]  # refused: nothing written
    status, output, records = run(server, "auditor", "log checkpoint")
    assert status == 0, output
    fields = dict(line.split(": ", 1) for line in output.splitlines())
    [checkpoint] = [r for r in records if r.event is EventType.LOG_CHECKPOINT]
    assert int(fields["checkpoint_seq"]) == checkpoint.seq
    [allow] = [r for r in records if r.seq == checkpoint.seq - 1]
    assert (allow.event, allow.principal, allow.outcome.value) == (
        EventType.AUDIT_LOG_ACCESS,
        "auditor",
        "allow",
    )
    assert allow.detail["command"] == "log checkpoint"
    assert (checkpoint.detail["head_seq"], checkpoint.detail["head_digest"]) == (allow.seq, allow.digest)
    assert int(fields["head_seq"]) == allow.seq


def test_help_lists_only_what_the_user_may_run(server: Server) -> None:
    status, output, _ = run(server, "termonly", "help")
    assert status == 0
    listed = {line.split("  ")[0].strip() for line in output.splitlines()[1:]}
    assert "show readings" in listed
    assert "exit" in listed
    assert not any(c.startswith(("demand", "passwd", "user", "log", "cert", "master-reset")) for c in listed)
    _, admin_help, _ = run(server, "admin", "help")
    assert "user add NAME" in admin_help
    assert "log show" not in admin_help


def test_unknown_and_malformed_commands_are_usage_errors(server: Server) -> None:
    assert run(server, "viewer1", "shwo readings")[0] == 2
    status, output, _ = run(server, "viewer1", "show")
    assert status == 2
    assert "show readings" in output
    status, output, _ = run(server, "engineer1", "test-mode maybe")
    assert status == 2
    assert "usage: test-mode on|off" in output
    status, output, _ = run(server, "viewer1", "time set")
    assert status == 2
    assert "usage: time set TIME" in output


def test_a_rejected_setting_is_recorded_as_a_failed_action(server: Server) -> None:
    status, output, records = run(server, "engineer1", "comm set modbus_unit_idd=7")
    assert status == 1
    assert "modbus_unit_id" in output
    outcomes = [(r.event, r.outcome.value) for r in decisions(records, "engineer1")]
    assert outcomes == [(EventType.CONFIG_CHANGE, "allow"), (EventType.CONFIG_CHANGE, "error")]


def test_demand_reset_honours_the_lockout_period(server: Server) -> None:
    status, output, records = run(server, "operator1", "demand reset")
    assert status == 0, output
    assert any(r.event is EventType.DEMAND_RESET for r in records)
    status, output, records = run(server, "operator1", "demand reset")
    assert status == 1
    assert "denied: peak_demand_reset (peak demand was reset" in output
    assert [r.event for r in decisions(records, "operator1")] == [EventType.PERMISSION_DENIED]


def test_firmware_install_from_the_file_area(server: Server) -> None:
    (area(server) / "firmware" / "fw-2.bin").write_bytes(build_image("2.0.1", b"payload" * 100))
    status, output, records = run(server, "installer1", "firmware install fw-2.bin")
    assert status == 0, output
    assert "version: 2.0.1" in output
    assert any(r.event is EventType.FIRMWARE_CHANGE and r.outcome.value == "allow" for r in records)
    status, output, _ = run(server, "installer1", "firmware install ../../etc/passwd")
    assert status == 2, output


def test_certificates_are_installed_listed_and_removed(server: Server) -> None:
    (area(server) / "certs" / "upload.pem").write_bytes(pem_of(make_certificate("scada-9")))
    status, output, _ = run(server, "secadm1", "cert install upload.pem")
    assert status == 0, output
    fingerprint = output.split("fingerprint: ")[1].split()[0]
    assert fingerprint in run(server, "secadm1", "cert list")[1]
    status, output, records = run(server, "secadm1", f"cert remove {fingerprint[:16]}")
    assert status == 0
    assert f"removed: {fingerprint}" in output
    assert any(r.permission == "certificate_management" for r in records)


def test_master_reset_waits_for_a_second_person(server: Server) -> None:
    result: dict[str, tuple[int, str, list[Record]]] = {}
    first = threading.Thread(target=lambda: result.update(a=run(server, "installer1", "master-reset")))
    first.start()
    deadline = time.monotonic() + 20
    while not server.guard.dual_control.pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    pending = server.guard.dual_control.pending()
    assert pending
    assert pending[0].requester == "installer1"
    status, output, _ = run(server, "installer1", f"approve {pending[0].id}")  # not oneself
    assert status == 1
    assert "someone else" in output
    status, output, _ = run(server, "viewer1", f"approve {pending[0].id}")  # not without the permission
    assert status == 1
    status, output, _ = run(server, "installer2", f"approve {pending[0].id}")
    assert status == 0, output
    first.join(30)
    status, output, records = result["a"]
    assert status == 0
    assert "reset_at:" in output
    reset = [r for r in records if r.event is EventType.MASTER_RESET]
    assert reset
    assert reset[-1].detail["approved_by"] == "installer2"


def test_passwd_changes_ones_own_password(server: Server) -> None:
    status, output, records = run(
        server, "pwuser", "passwd", stdin=f"{PASSWORD}\n{NEW_PASSWORD}\n{NEW_PASSWORD}\n"
    )
    assert status == 0, output
    assert "password changed" in output
    events = [r.event for r in records if r.principal == "pwuser"]
    assert EventType.PASSWORD_CHANGE in events
    # Credentials are the meter's, not the policy's: the change is the credentials' own record.
    assert EventType.POLICY_CHANGE not in events
    stored = [r.detail for r in records if r.principal == "pwuser" and r.event is EventType.PASSWORD_CHANGE]
    assert {"how": "password_change", "store": "memory", "users": "pwuser"} in stored
    assert server.ssh_password("pwuser", NEW_PASSWORD).returncode == 0
    assert server.ssh_password("pwuser", PASSWORD).returncode != 0
    status, output, _ = run(server, "pwuser", "passwd", stdin="wrong-one\n")
    assert status == 1
    assert "current password is wrong" in output
    status, output, _ = run(server, "pwuser", "passwd", stdin=f"{NEW_PASSWORD}\nshort\nshort\n")
    assert status == 1
    assert "at least 12 characters" in output


def test_user_management_edits_the_policy(server: Server) -> None:
    key = server.key_lines["viewer1"].split()
    status, output, records = run(server, "admin", f"user add newbie viewer {key[0]} {key[1]}", stdin="\n")
    assert status == 0, output
    assert "newbie" in server.guard.compiled.policy.users
    assert any(r.event is EventType.POLICY_CHANGE and r.detail.get("change") == "user_add" for r in records)
    assert server.ssh("newbie", "whoami", key=server.keys["viewer1"]).returncode == 0
    assert run(server, "admin", "user roles newbie operator")[0] == 0
    assert server.guard.compiled.policy.users["newbie"].roles == ("operator",)
    status, output, _ = run(
        server, "admin", "user reset-password newbie", stdin=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n"
    )
    assert status == 0, output
    assert server.ssh_password("newbie", NEW_PASSWORD).returncode == 0
    status, output, _ = run(server, "admin", "user roles admin viewer")  # would leave nobody to manage users
    assert status == 1
    assert "user_management" in output
    status, output, _ = run(server, "admin", "user roles newbie nosuchrole")
    assert status == 1
    assert "no role" in output
    assert run(server, "admin", "user remove newbie")[0] == 0
    assert "newbie" not in server.guard.compiled.policy.users
    assert server.ssh("newbie", "whoami", key=server.keys["viewer1"]).returncode == 255


def test_exit_ends_an_interactive_session(server: Server) -> None:
    mark = server.mark()
    result = server.ssh("viewer1", None, stdin="whoami\nexit\nshow time\n")
    assert result.returncode == 0
    assert "user: viewer1" in result.stdout
    assert "meter_time" not in result.stdout
    records = server.until(mark, lambda rs: any(r.event is EventType.LOGOUT_MANUAL for r in rs))
    events = [r.event for r in records if r.principal == "viewer1"]
    assert events[0] is EventType.LOGIN_SUCCESS
    assert events[-1] is EventType.LOGOUT_MANUAL


def test_approving_a_missing_request_names_it_and_records_no_denial(server: Server) -> None:
    for verb in ("approve", "reject"):
        status, output, records = run(server, "installer2", f"{verb} 999")
        assert (status, output) == (2, "no pending request 999\n")
        assert not [r for r in records if r.outcome.value == "deny"]
        assert [r.permission for r in decisions(records, "installer2")] == ["terminal_access"]


def test_help_offers_approvals_only_to_a_second_person(server: Server) -> None:
    approver_commands = ("approvals", "approve ID", "reject ID")
    _, installer_help, _ = run(server, "installer1", "help")  # holds master_reset, under dual control
    assert all(f"\n{c}  " in installer_help for c in approver_commands), installer_help
    for user in ("viewer1", "engineer1", "admin"):
        _, other_help, _ = run(server, user, "help")
        assert not any(f"\n{c}  " in other_help for c in approver_commands), other_help


def test_a_command_that_cannot_succeed_asks_the_guard_nothing(server: Server) -> None:
    status, output, records = run(server, "secadm1", "cert remove 0123456789abcdef")
    assert (status, output) == (1, "error: no installed certificate matches fingerprint '0123456789abcdef'\n")
    assert decisions(records, "secadm1") == []
    status, output, records = run(server, "installer1", "firmware install missing.bin")
    assert status == 1
    assert output.startswith("error: cannot open /firmware/missing.bin: No such file")
    assert decisions(records, "installer1") == []
    status, output, records = run(server, "viewer1", "cert remove 0123456789abcdef")  # no permission: no hint
    assert (status, output) == (
        1,
        "denied: certificate_management (no role of viewer1 grants certificate_management)\n",
    )
    assert [r.event for r in decisions(records, "viewer1")] == [EventType.PERMISSION_DENIED]
