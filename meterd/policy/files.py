"""Reading policy files from disk: the one place policy I/O happens."""

from __future__ import annotations

import tomllib
from pathlib import Path

from meterd.errors import PolicyError
from meterd.policy.loader import load_policy
from meterd.policy.model import Policy

MAX_POLICY_BYTES = 4 * 1024 * 1024


def read_policy_text(text: str, source: str) -> Policy:
    """Parse and validate policy TOML text.

    Raises:
        PolicyError: If the text is not TOML or not a valid policy (a
            :class:`~meterd.errors.PolicyValidationError` lists every problem).

    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"not valid TOML: {e}", source=source) from e
    return load_policy(data, source)


def read_policy_file(path: Path) -> Policy:
    """Read, parse and validate a ``policy.toml``.

    Raises:
        PolicyError: If the file cannot be read, is too large, or is invalid.

    """
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_POLICY_BYTES + 1)
    except OSError as e:
        raise PolicyError(f"cannot read: {e.strerror}", source=str(path)) from e
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"larger than {MAX_POLICY_BYTES} bytes", source=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PolicyError("not UTF-8 text", source=str(path)) from e
    return read_policy_text(text, str(path))
