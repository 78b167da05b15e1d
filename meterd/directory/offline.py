"""The offline cache: what a directory said at the last online login, for when it cannot be reached.

One JSON file in the state directory (0600, replaced atomically and synced),
one entry per directory user: an scrypt hash of the password that the
directory accepted, the groups (and roles, scope) it reported then, and when.

Invariants:
    * An entry is written only after an online login the directory accepted
      and the policy mapped.  Nothing the directory refused stays usable: an
      entry goes when the directory refuses its very password (the password
      was changed) or no longer knows the user.  A mere wrong guess leaves it,
      so guessing online cannot take a user's offline login away.
    * An entry older than its TTL is never used (nor is one from the future:
      a clock set back does not extend it).
    * The file is only a fallback: an unreadable or corrupt file means no
      offline login, never an error at start-up.

Blocking (scrypt, file I/O): call from a worker thread.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from meterd.credentials import hash_secret, verify_secret
from meterd.fsutil import atomic_write
from meterd.record import record

log = logging.getLogger(__name__)

#: Directory users the cache remembers (the oldest entries go first).
MAX_ENTRIES = 1000


@record
class CachedLogin:
    """What an online login left for offline use.

    Attributes:
        groups: Directory groups reported then.
        roles: Roles the directory named then.
        scope: Scope the directory named then.
        backend: ``ldap`` or ``radius``.
        at: Wall time of that login.
    """

    groups: frozenset[str]
    roles: frozenset[str]
    scope: str | None
    backend: str
    at: float


class OfflineCache:
    """The cache file (see the module docstring).

    Args:
        path: The file, below the state directory.
        ttl: Seconds an entry stays usable.
    """

    def __init__(self, path: Path, ttl: float) -> None:
        self.path = path
        self.ttl = ttl
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("offline cache %s unusable: %s", self.path, e)
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, entries: dict[str, dict[str, Any]]) -> None:
        atomic_write(self.path, json.dumps(entries, sort_keys=True).encode(), 0o600)

    def store(self, name: str, password: str, login: CachedLogin) -> None:
        """Remember an accepted online login (replacing the user's previous entry)."""
        entry = {
            "hash": hash_secret(password),
            "groups": sorted(login.groups),
            "roles": sorted(login.roles),
            "scope": login.scope,
            "backend": login.backend,
            "at": login.at,
        }
        with self._lock:
            entries = self._read()
            entries.pop(name, None)
            entries[name] = entry
            while len(entries) > MAX_ENTRIES:
                oldest = min(entries, key=lambda n: float(entries[n].get("at", 0)))
                del entries[oldest]
            self._write(entries)

    def forget(self, name: str, password: str | None = None) -> bool:
        """Delete ``name``'s entry because the directory refused it; return True if one went.

        Args:
            name: The user.
            password: The password the directory refused: the entry goes only if it is
                that password's (a changed password's old one); None: the entry goes
                whatever it holds (the directory no longer knows the user).
        """
        with self._lock:
            entry = self._read().get(name)
        if not isinstance(entry, dict):
            return False
        if password is not None and not verify_secret(password, str(entry.get("hash", ""))):
            return False
        with self._lock:
            entries = self._read()
            if entries.pop(name, None) is None:
                return False
            self._write(entries)
            return True

    def check(self, name: str, password: str, now: float) -> CachedLogin | None:
        """The cached login of ``name`` if it is fresh and ``password`` matches, else None."""
        with self._lock:
            entry = self._read().get(name)
        if not isinstance(entry, dict):
            return None
        try:
            at = float(entry["at"])
            login = CachedLogin(
                frozenset(str(g) for g in entry["groups"]),
                frozenset(str(r) for r in entry["roles"]),
                None if entry["scope"] is None else str(entry["scope"]),
                str(entry["backend"]),
                at,
            )
            stored = str(entry["hash"])
        except (KeyError, TypeError, ValueError):
            return None
        if not 0 <= now - at <= self.ttl:
            return None
        return login if verify_secret(password, stored) else None
