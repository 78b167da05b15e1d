"""Demo accounts for the embedded default: random credentials on first start, never fixed ones.

Enabled users that have no credential in the policy get a random password and
panel PIN.  The hashes are kept in ``demo-accounts.toml`` (merged into the
configured policy whenever it is read, so a reload keeps them) and the clear
text goes once into ``demo-credentials.txt`` (0600) for the person running
the demo.
"""

from __future__ import annotations

import secrets
import string
import tomllib
from pathlib import Path
from typing import Any

from meterd.credentials import hash_secret
from meterd.fsutil import atomic_write

HASHES = "demo-accounts.toml"
CLEAR_TEXT = "demo-credentials.txt"


def _password() -> str:
    alphabet = string.ascii_letters + string.digits
    core = "".join(secrets.choice(alphabet) for _ in range(14))
    # Guarantees every character class the default password rules ask for.
    return f"{core}-{secrets.choice(string.digits)}{secrets.choice(string.ascii_uppercase)}"


def _pin() -> str:
    return "".join(secrets.choice(string.digits) for _ in range(6))


def apply_demo_accounts(data: dict[str, Any], state_dir: Path) -> Path | None:
    """Fill in demo credentials in parsed policy ``data`` (in place).

    Returns:
        The clear-text credentials file if it was created just now, else None.
    """
    hashes_path = state_dir / HASHES
    stored: dict[str, Any] = tomllib.loads(hashes_path.read_text()) if hashes_path.exists() else {}
    users = data.get("users", {})
    created: list[tuple[str, str, str]] = []
    for name, entry in sorted(users.items()):
        if not isinstance(entry, dict) or entry.get("enabled", True) is False:
            continue
        if any(k in entry for k in ("password", "pin", "ssh_keys")):
            continue
        if name not in stored:
            password, pin = _password(), _pin()
            stored[name] = {"password": hash_secret(password), "pin": hash_secret(pin)}
            created.append((name, password, pin))
        entry.update(stored[name])
    if not created:
        return None
    lines = [
        f'[{name}]\npassword = "{h["password"]}"\npin = "{h["pin"]}"\n' for name, h in sorted(stored.items())
    ]
    atomic_write(hashes_path, "\n".join(lines).encode())
    clear = state_dir / CLEAR_TEXT
    previous = clear.read_text() if clear.exists() else "# user  password  panel-PIN\n"
    atomic_write(clear, (previous + "".join(f"{n}  {p}  {pin}\n" for n, p, pin in created)).encode())
    return clear
