"""Demo accounts for the embedded default: random credentials on first start, never fixed ones.

Enabled users that have no credential in the policy get a random password,
a panel PIN and an SSH key pair.  The hashes and public keys are kept in
``demo-accounts.toml`` and merged into every policy text meterd puts in force
as its initial credentials: they seed the credential store for a user it does
not hold yet, and never replace what it holds; the clear
text goes once into ``demo-credentials.txt`` (0600) and the private keys
into ``demo-keys/<user>`` (0600) for the person running the demo.

Only the configured policy file, read on start and on reload, creates demo
credentials; a pushed policy gets those that exist and writes nothing, so a
dry run or a refused push leaves the state directory as it was.
"""

from __future__ import annotations

import secrets
import string
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from meterd.credentials import hash_secret
from meterd.errors import ConfigError
from meterd.fsutil import atomic_write, private_dir
from meterd.policy.loader import NAME_PATTERN
from meterd.statedir import DEMO_ACCOUNTS, DEMO_CREDENTIALS, DEMO_KEYS

HASHES = DEMO_ACCOUNTS.name
CLEAR_TEXT = DEMO_CREDENTIALS.name
KEYS = DEMO_KEYS.name
_HEADER = "# user  password  panel-PIN  ssh-private-key\n"
_CREDENTIALS = ("password", "pin", "ssh_keys")
#: The clear-text column of a password or PIN written to the file at an earlier start.
_SHOWN_BEFORE = "-"


def _password() -> str:
    alphabet = string.ascii_letters + string.digits
    core = "".join(secrets.choice(alphabet) for _ in range(14))
    # Guarantees every character class the default password rules ask for.
    return f"{core}-{secrets.choice(string.digits)}{secrets.choice(string.ascii_uppercase)}"


def _pin() -> str:
    return "".join(secrets.choice(string.digits) for _ in range(6))


def _key_pair(name: str, directory: Path) -> tuple[str, Path]:
    """Write a new Ed25519 private key for ``name`` (OpenSSH format, 0600); return its public key line."""
    key = Ed25519PrivateKey.generate()
    path = private_dir(directory) / name
    atomic_write(path, key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()), mode=0o600)
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return f"{public} meterd-demo-{name}", path


def _render(stored: dict[str, Any]) -> bytes:
    tables = []
    for name, entry in sorted(stored.items()):
        keys = ", ".join(f'"{k}"' for k in entry.get("ssh_keys", []))
        tables.append(
            f'[{name}]\npassword = "{entry["password"]}"\npin = "{entry["pin"]}"\nssh_keys = [{keys}]\n'
        )
    return "\n".join(tables).encode()


def apply_demo_accounts(
    data: dict[str, Any], state_dir: Path, *, create: bool = True, known: Collection[str] = ()
) -> Path | None:
    """Fill in demo credentials in parsed policy ``data`` (in place).

    Args:
        data: A parsed policy; enabled users without any credential get the demo ones.
        state_dir: The daemon's state directory.
        create: Make credentials for users that have none yet (the configured
            policy); if False (a pushed policy), only merge existing ones and write nothing.
        known: Users the meter's credential store already holds: nothing is made for them
            (a demo credential would never be used).

    Returns:
        The clear-text credentials file if something was added to it just now, else None.

    Raises:
        ConfigError: The stored demo accounts are unreadable.
    """
    hashes_path = state_dir / HASHES
    try:
        stored: dict[str, Any] = tomllib.loads(hashes_path.read_text()) if hashes_path.exists() else {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read the demo accounts: {e}", source=str(hashes_path)) from e
    users = data.get("users", {})
    if not isinstance(users, dict):
        return None  # the loader reports it
    added: list[str] = []
    for name, entry in sorted(users.items()):
        if not isinstance(entry, dict) or entry.get("enabled", True) is False:
            continue
        if any(k in entry for k in _CREDENTIALS):
            continue
        if create and NAME_PATTERN.match(name) and name not in known:
            added += _create(name, stored, state_dir)
        if name in stored:
            entry.update(stored[name])
    if not added:
        return None
    atomic_write(hashes_path, _render(stored))
    clear = state_dir / CLEAR_TEXT
    previous = clear.read_text() if clear.exists() else _HEADER
    atomic_write(clear, (previous + "".join(added)).encode())
    return clear


def _create(name: str, stored: dict[str, Any], state_dir: Path) -> list[str]:
    """Give ``name`` whatever demo credential it lacks; return its lines for the clear-text file."""
    entry = stored.get(name)
    if entry is not None and entry.get("ssh_keys"):
        return []
    if entry is None:
        password, pin = _password(), _pin()
        entry = stored[name] = {"password": hash_secret(password), "pin": hash_secret(pin)}
    else:
        # Made before demo accounts had keys: the password and PIN were shown then.
        password = pin = _SHOWN_BEFORE
    public, path = _key_pair(name, state_dir / KEYS)
    entry["ssh_keys"] = [public]
    return [f"{name}  {password}  {pin}  {path}\n"]
