"""Loading policy files: every error names the file, the key path and a suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterd.credentials import hash_secret
from meterd.errors import PolicyError, PolicyValidationError
from meterd.policy.builtin import BUILTIN_ROLES
from meterd.policy.dump import dump_policy
from meterd.policy.files import read_policy_file, read_policy_text
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from tests.policy.strategies import policy_documents

CONFIG = Path(__file__).resolve().parents[2] / "config"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILzV46COZHdDjA1kQLxBGjl6dfPlpLj0A3f3W9N+0eCC tool"


def errors_of(text: str) -> list[str]:
    with pytest.raises(PolicyValidationError) as caught:
        read_policy_text(text, "policy.toml")
    return [e.render() for e in caught.value.errors]


def test_misspelt_permission_names_key_path_and_suggestion() -> None:
    text = '[roles.tech]\npermissions = ["terminal_access", "time_sync", "master_rest"]\n'
    assert errors_of(text) == [
        'policy.toml: roles.tech.permissions[2]: unknown permission "master_rest"; did you mean "master_reset"?'
    ]


def test_unknown_keys_are_errors_with_suggestions() -> None:
    text = "[setings]\n[users.al]\nrole = []\n"
    found = errors_of(text)
    assert 'policy.toml: setings: unknown key "setings"; did you mean "settings"?' in found
    assert 'policy.toml: users.al.role: unknown key "role"; did you mean "roles"?' in found


def test_missing_references_are_errors() -> None:
    text = """
[users.al]
roles = ["operater"]
scopes = ["/files/dta"]
[groups.techs]
members = ["bo"]
roles = ["ghost"]
"""
    found = errors_of(text)
    assert 'policy.toml: users.al.roles[0]: unknown role "operater"; did you mean "operator"?' in found
    assert 'policy.toml: users.al.scopes[0]: unknown scope "/files/dta"; did you mean "/files/data"?' in found
    assert 'policy.toml: groups.techs.members[0]: unknown user "bo"' in found
    assert 'policy.toml: groups.techs.roles[0]: unknown role "ghost"' in found


@pytest.mark.parametrize("name", [r.name for r in BUILTIN_ROLES])
def test_builtin_roles_cannot_be_redefined(name: str) -> None:
    found = errors_of(f'[roles.{name}]\npermissions = ["master_reset"]\n')
    assert found == [f'policy.toml: roles.{name}: "{name}" is a built-in role and cannot be redefined']


def test_builtin_roles_are_always_present_and_numbered() -> None:
    policy = load_policy({})
    assert [(r.name, r.builtin_id) for r in BUILTIN_ROLES] == [
        ("viewer", 0),
        ("operator", 1),
        ("engineer", 2),
        ("installer", 3),
        ("secadm", 4),
        ("secaud", 5),
        ("rbacmnt", 6),
    ]
    for role in BUILTIN_ROLES:
        assert policy.roles[role.name] == role
    holders = [r.name for r in BUILTIN_ROLES if Permission.SECURITY_LOGS_ACCESS in r.permissions]
    assert holders == ["secaud"]
    assert Permission.USER_MANAGEMENT in policy.roles["rbacmnt"].permissions


def test_clear_text_password_is_refused() -> None:
    found = errors_of('[users.al]\nroles = ["viewer"]\npassword = "hunter2hunter2"\n')
    assert found == [
        "policy.toml: users.al.password: not a password hash (make one with `meterctl user hash-password`)"
    ]


def test_weak_hash_parameters_are_refused() -> None:
    weak = "$scrypt$ln=10,r=8,p=1$" + "A" * 22 + "$" + "B" * 43
    found = errors_of(f'[users.al]\npassword = "{weak}"\n')
    assert "outside the allowed range" in found[0]


def test_hashes_keys_and_fingerprints_load() -> None:
    pin = hash_secret("482913")
    text = f"""
[users.al]
roles = ["operator"]
pin = "{pin}"
ssh_keys = ["{KEY}"]
[applications.scada]
roles = ["viewer"]
cert_fingerprints = ["sha256:{"AB" * 32}"]
"""
    policy = read_policy_text(text, "p")
    assert policy.users["al"].pin_hash == pin
    assert policy.applications["scada"].cert_fingerprints == ("sha256:" + "ab" * 32,)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ssh-ed25519", "must be an OpenSSH public key line"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP tool", 'unsupported key type "ssh-dss"'),
        ("ssh-ed25519 !!!notbase64 tool", "not valid base64"),
        (
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAILzV46COZHdDjA1kQLxBGjl6dfPlpLj0A3f3W9N+0eCC x",
            'is a "ssh-ed25519" key',
        ),
    ],
)
def test_bad_ssh_keys_are_refused(line: str, message: str) -> None:
    found = errors_of(f'[users.al]\nssh_keys = ["{line}"]\n')
    assert message in found[0]
    assert found[0].startswith("policy.toml: users.al.ssh_keys[0]: ")


def test_type_and_bound_errors() -> None:
    text = """
[settings]
login_failure_threshold = 0
login_lockout = "15m"
session_idle_timeout = true
[settings.password]
min_length = 4
"""
    found = errors_of(text)
    assert "policy.toml: settings.login_failure_threshold: must be between 1 and 100, not 0" in found
    assert "policy.toml: settings.login_lockout: must be an integer, not a string" in found
    assert "policy.toml: settings.session_idle_timeout: must be an integer, not true or false" in found
    assert "policy.toml: settings.password.min_length: must be between 8 and 128, not 4" in found


def test_names_and_namespace() -> None:
    found = errors_of("[users.Bad]\n[users.anonymous]\n[users.x]\n[applications.x]\n")
    assert any('users.Bad: user name "Bad"' in f for f in found)
    assert any('"anonymous" is reserved' in f for f in found)
    assert any('applications.x: "x" is already a user' in f for f in found)


def test_constraints_load() -> None:
    text = """
[constraints]
separation_of_duties = [["user_management", "security_logs_access"], ["time_sync", "time_sink"]]
dual_control = ["master_reset"]
[constraints.channel_caps]
panel = { deny = ["user_management"] }
serial = { roles = ["operator"] }
telnet = {}
"""
    found = errors_of(text)
    assert (
        'policy.toml: constraints.separation_of_duties[1][1]: unknown permission "time_sink"; did you mean "time_sync"?'
        in found
    )
    assert any('constraints.channel_caps.telnet: unknown channel "telnet"' in f for f in found)
    good = read_policy_text(
        text.replace(', ["time_sync", "time_sink"]', "").replace("telnet = {}\n", ""), "p"
    )
    caps = good.constraints.channel_caps
    assert Permission.USER_MANAGEMENT not in caps[Channel.PANEL]
    assert len(caps[Channel.PANEL]) == 16
    assert caps[Channel.SERIAL] == good.roles["operator"].permissions
    assert good.constraints.dual_control == {Permission.MASTER_RESET}


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        read_policy_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[users\n")
    with pytest.raises(PolicyError, match=r"bad\.toml: not valid TOML"):
        read_policy_file(bad)
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(PolicyError, match="not UTF-8"):
        read_policy_file(bad)


@pytest.mark.parametrize("path", sorted(CONFIG.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_policies_load(path: Path) -> None:
    read_policy_file(path)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    ["users", "roles", "groups", "roles", "permissions", "scopes", "x", "settings"]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=20,
    )
)
def test_arbitrary_documents_never_crash(doc: object) -> None:
    if not isinstance(doc, dict):
        doc = {"users": doc}
    try:
        load_policy(doc)
    except PolicyValidationError as e:
        errors = e.errors
    else:
        return
    assert errors
    assert all(err.source for err in errors)


@settings(max_examples=300, deadline=None)
@given(doc=policy_documents())
def test_dump_round_trips(doc: dict[str, object]) -> None:
    policy = load_policy(doc)
    again = read_policy_text(dump_policy(policy), "dumped.toml")
    assert again == policy
