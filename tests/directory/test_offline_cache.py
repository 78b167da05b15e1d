"""The offline cache file on its own: TTL, clocks set back, corrupt files, the owner-only mode."""

from __future__ import annotations

import stat
from pathlib import Path

from meterd.directory.offline import CachedLogin, OfflineCache

LOGIN = CachedLogin(frozenset({"operators"}), frozenset(), None, "ldap", 1_000_000.0)


def test_an_entry_is_usable_only_within_its_ttl_and_never_from_the_future(tmp_path: Path) -> None:
    cache = OfflineCache(tmp_path / "directory-cache.json", ttl=3600)
    cache.store("lena", "Lena-Password-1", LOGIN)
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert cache.check("lena", "Lena-Password-1", LOGIN.at + 3599) == LOGIN
    assert cache.check("lena", "Lena-Password-1", LOGIN.at + 3601) is None
    assert cache.check("lena", "Lena-Password-1", LOGIN.at - 60) is None  # the clock was set back
    assert cache.check("lena", "wrong", LOGIN.at + 1) is None
    assert cache.check("nobody", "Lena-Password-1", LOGIN.at + 1) is None


def test_forget_takes_the_refused_password_only(tmp_path: Path) -> None:
    cache = OfflineCache(tmp_path / "directory-cache.json", ttl=3600)
    cache.store("lena", "Lena-Password-1", LOGIN)
    assert not cache.forget("lena", "a-wrong-guess")
    assert cache.check("lena", "Lena-Password-1", LOGIN.at + 1) == LOGIN
    assert cache.forget("lena", "Lena-Password-1")
    assert cache.check("lena", "Lena-Password-1", LOGIN.at + 1) is None
    cache.store("lena", "Lena-Password-1", LOGIN)
    assert cache.forget("lena")  # the directory no longer knows her


def test_a_corrupt_file_means_no_offline_login_not_an_error(tmp_path: Path) -> None:
    cache = OfflineCache(tmp_path / "directory-cache.json", ttl=3600)
    cache.path.write_text("{not json")
    assert cache.check("lena", "Lena-Password-1", LOGIN.at) is None
    cache.store("lena", "Lena-Password-1", LOGIN)  # replaced by a good file
    assert cache.check("lena", "Lena-Password-1", LOGIN.at) == LOGIN
