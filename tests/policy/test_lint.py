"""Lint: separation of duties, the last user manager, and least-privilege warnings."""

from __future__ import annotations

from typing import Any

from meterd.policy.lint import Severity, lint_policy
from meterd.policy.loader import load_policy

BASE: dict[str, Any] = {"users": {"admin": {"roles": ["rbacmnt"]}}}


def codes(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(f.severity.value, f.code, f.subject) for f in lint_policy(load_policy(doc))]


def test_clean_policy_has_no_findings() -> None:
    assert codes(BASE) == []


def test_static_separation_of_duties_violation_is_an_error() -> None:
    doc = {
        "users": {"admin": {"roles": ["rbacmnt"]}, "eve": {"roles": ["rbacmnt", "secaud"]}},
        "constraints": {"separation_of_duties": [["user_management", "security_logs_access"]]},
    }
    assert ("error", "sod-violation", "eve") in codes(doc)


def test_violation_through_a_group_is_found() -> None:
    doc = {
        "users": {"admin": {"roles": ["rbacmnt"]}, "eve": {"roles": ["secaud"]}},
        "groups": {"admins": {"members": ["eve"], "roles": ["rbacmnt"]}},
        "constraints": {"separation_of_duties": [["user_management", "security_logs_access"]]},
    }
    assert ("error", "sod-violation", "eve") in codes(doc)


def test_role_granting_both_halves_is_an_error() -> None:
    doc = {
        **BASE,
        "roles": {"god": {"permissions": ["user_management", "security_logs_access"]}},
        "constraints": {"separation_of_duties": [["user_management", "security_logs_access"]]},
    }
    assert ("error", "sod-role", "god") in codes(doc)


def test_nobody_holding_user_management_is_an_error() -> None:
    assert ("error", "no-user-manager", "policy") in codes({"users": {"op": {"roles": ["operator"]}}})
    disabled = {"users": {"admin": {"roles": ["rbacmnt"], "enabled": False}}}
    assert ("error", "no-user-manager", "policy") in codes(disabled)
    capped = {
        **BASE,
        "constraints": {
            "channel_caps": {
                c: {"deny": ["user_management"]}
                for c in ("ssh", "sftp", "serial", "panel", "modbus", "local")
            }
        },
    }
    assert ("error", "no-user-manager", "constraints.channel_caps") in codes(capped)


def test_anonymous_does_not_count_as_user_manager() -> None:
    assert ("error", "no-user-manager", "policy") in codes({"anonymous": {"roles": ["rbacmnt"]}})


def test_warnings() -> None:
    doc = {
        "users": {"admin": {"roles": ["rbacmnt"]}, "root": {"roles": ["everything"]}},
        "roles": {
            "unused": {"permissions": ["time_sync"]},
            "everything": {
                "permissions": [
                    "certificate_management",
                    "comm_config",
                    "dss_config",
                    "fs_read_write",
                    "fs_read_only",
                    "firmware_management",
                    "front_panel_config",
                    "front_panel_restart",
                    "ion_module_config",
                    "master_reset",
                    "password_self_management",
                    "peak_demand_reset",
                    "security_logs_access",
                    "terminal_access",
                    "test_mode_toggle",
                    "time_sync",
                    "user_management",
                ]
            },
            "my_viewer": {"permissions": ["terminal_access", "fs_read_only", "password_self_management"]},
        },
        "groups": {"nobody": {}, "viewers": {"roles": ["my_viewer"], "directory_group": "CN=V"}},
    }
    found = codes(doc)
    assert ("warning", "unused-role", "unused") in found
    assert ("warning", "all-permissions", "root") in found
    assert ("warning", "copy-of-builtin", "my_viewer") in found
    assert ("warning", "empty-group", "nobody") in found
    assert ("warning", "empty-group", "viewers") not in found
    assert all(f.severity is Severity.WARNING for f in lint_policy(load_policy(doc)))
