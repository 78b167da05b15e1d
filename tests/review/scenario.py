"""One small, known log and policy for the review tests: every finding occurs in it once."""

from __future__ import annotations

from pathlib import Path

from benchmarks.synthlog import Spec, allow, deny, login, write_log
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Outcome
from meterd.seclog.events import EventType

POLICY = """
[policy]
name = "review scenario"
version = 3

[constraints]
dual_control = ["master_reset"]

[users.alice]
roles = ["viewer"]

[users.bob]
roles = ["engineer"]

[users.carol]
roles = ["operator"]

[users.dave]
roles = ["installer"]

[users.erin]
roles = ["installer"]

[applications.scada]
roles = ["viewer"]
"""

#: alice loses viewer, carol gains rbacmnt (user_management).
CANDIDATE = POLICY.replace('[users.alice]\nroles = ["viewer"]', "[users.alice]\nroles = []").replace(
    '[users.carol]\nroles = ["operator"]', '[users.carol]\nroles = ["operator", "rbacmnt"]'
)

SPECS: list[Spec] = [
    login("alice", 1),  # seq 2
    allow("alice", Permission.TERMINAL_ACCESS, 2, resource="/"),  # 3
    allow("alice", Permission.TERMINAL_ACCESS, 3, resource="/"),  # 4
    allow(
        "alice",
        Permission.FS_READ_ONLY,
        4,
        channel=Channel.SFTP,
        resource="/files/data",
        detail={"aggregated": 10},
    ),
    login("bob", 5, Channel.SERIAL),  # 6
    allow("bob", Permission.TIME_SYNC, 6, channel=Channel.SERIAL, resource="/meter/clock"),  # 7
    deny("carol", Permission.USER_MANAGEMENT, 7, resource="/meter/users"),  # 8
    deny("carol", Permission.USER_MANAGEMENT, 8, resource="/meter/users"),  # 9
    deny("carol", Permission.USER_MANAGEMENT, 9, resource="/meter/users"),  # 10
    login("erin", 10),  # 11
    allow(
        "erin",
        Permission.MASTER_RESET,
        11,
        resource="/",
        detail={"dual_control": 1, "state": "awaiting_approval"},
    ),
    deny(
        "erin",
        Permission.MASTER_RESET,
        12,
        reason="dual_control",
        resource="/",
        detail={"dual_control": 1, "why": "dual control: rejected by bob"},
    ),  # 13
    deny(
        "erin",
        Permission.MASTER_RESET,
        13,
        reason="dual_control",
        resource="/",
        detail={"dual_control": 2, "why": "dual control: not approved within 300 s"},
    ),  # 14
    Spec(
        EventType.POLICY_CHANGE,
        "bob",
        channel=Channel.SSH,
        detail={"how": "push", "version": 4, "gained": 1, "lost": 0},
        at=14,
    ),  # 15
    Spec(
        EventType.PERMISSION_DENIED,
        "anonymous",
        Outcome.DENY,
        channel=Channel.MODBUS,
        kind="anonymous",
        detail={"summarised": 40, "reason": "not_granted"},
        at=15,
    ),  # 16
    allow(
        "scada",
        Permission.FS_READ_ONLY,
        16,
        channel=Channel.MODBUS,
        kind="application",
        resource="/modbus/unit/1",
        detail={"aggregated": 100},
    ),  # 17
]


def make(tmp: Path) -> tuple[Path, Path, Path]:
    """Write the log, its key and the policy under ``tmp``; return (log, key file, policy file)."""
    log = tmp / "log"
    key = write_log(log, SPECS)
    key_file = tmp / "key"
    key_file.write_text(key.hex() + "\n")
    policy = tmp / "policy.toml"
    policy.write_text(POLICY)
    return log, key_file, policy
