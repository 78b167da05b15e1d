"""Demo accounts: a random password, PIN and SSH key pair per credential-less user, made once and kept."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_ssh_private_key

from meterd.credentials import verify_secret
from meterd.daemon.demo import CLEAR_TEXT, HASHES, KEYS, apply_demo_accounts
from meterd.policy.loader import load_policy


def policy_data() -> dict[str, Any]:
    return {
        "users": {
            "rbacmnt": {"roles": ["rbacmnt"]},
            "operator": {"roles": ["operator"]},
            "keyed": {"roles": ["viewer"], "ssh_keys": []},
            "retired": {"roles": ["viewer"], "enabled": False},
        }
    }


def tree(root: Path) -> dict[str, tuple[int, int, bytes]]:
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            st = path.stat()
            found[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, path.read_bytes())
    return found


def clear_lines(state: Path) -> dict[str, list[str]]:
    lines = (state / CLEAR_TEXT).read_text().splitlines()
    assert lines[0] == "# user  password  panel-PIN  ssh-private-key"
    return {fields[0]: fields[1:] for fields in (line.split() for line in lines[1:])}


def test_first_read_makes_a_key_pair_per_account_and_a_reload_keeps_it(tmp_path: Path) -> None:
    data = policy_data()
    assert apply_demo_accounts(data, tmp_path) == tmp_path / CLEAR_TEXT
    users = data["users"]
    assert sorted(n for n, u in users.items() if "password" in u) == ["operator", "rbacmnt"]
    assert users["keyed"] == {"roles": ["viewer"], "ssh_keys": []}
    assert (tmp_path / KEYS).stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in (tmp_path / KEYS).iterdir()) == ["operator", "rbacmnt"]
    clear = clear_lines(tmp_path)
    for name in ("operator", "rbacmnt"):
        password, pin, key_file = clear[name]
        assert verify_secret(password, users[name]["password"])
        assert verify_secret(pin, users[name]["pin"])
        assert Path(key_file) == tmp_path / KEYS / name
        assert Path(key_file).stat().st_mode & 0o777 == 0o600
        private = load_ssh_private_key(Path(key_file).read_bytes(), None)
        public = private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
        assert users[name]["ssh_keys"] == [f"{public} meterd-demo-{name}"]
    load_policy(data)  # the merged keys are valid authorized-key lines

    before = tree(tmp_path)
    again = policy_data()
    assert apply_demo_accounts(again, tmp_path) is None
    assert again == data
    assert tree(tmp_path) == before


def test_a_pushed_policy_gets_existing_credentials_and_nothing_is_written(tmp_path: Path) -> None:
    apply_demo_accounts(policy_data(), tmp_path)
    before = tree(tmp_path)
    pushed = policy_data()
    pushed["users"]["newcomer"] = {"roles": ["viewer"]}
    assert apply_demo_accounts(pushed, tmp_path, create=False) is None
    assert pushed["users"]["rbacmnt"]["ssh_keys"]
    assert pushed["users"]["newcomer"] == {"roles": ["viewer"]}
    assert tree(tmp_path) == before


def test_accounts_made_before_keys_existed_get_one(tmp_path: Path) -> None:
    data = policy_data()
    apply_demo_accounts(data, tmp_path)
    stored = (tmp_path / HASHES).read_text()
    (tmp_path / HASHES).write_text("\n".join(line for line in stored.splitlines() if "ssh_keys" not in line))
    (tmp_path / CLEAR_TEXT).write_text("# user  password  panel-PIN  ssh-private-key\n")
    for key in (tmp_path / KEYS).iterdir():
        key.unlink()
    again = policy_data()
    apply_demo_accounts(again, tmp_path)
    assert again["users"]["rbacmnt"]["password"] == data["users"]["rbacmnt"]["password"]
    assert again["users"]["rbacmnt"]["ssh_keys"] != data["users"]["rbacmnt"]["ssh_keys"]
    assert clear_lines(tmp_path)["rbacmnt"] == ["-", "-", str(tmp_path / KEYS / "rbacmnt")]


def test_malformed_users_are_left_to_the_loader(tmp_path: Path) -> None:
    data: dict[str, Any] = {"users": ["rbacmnt"]}
    original = copy.deepcopy(data)
    assert apply_demo_accounts(data, tmp_path) is None
    assert data == original
    assert not any(tmp_path.iterdir())
