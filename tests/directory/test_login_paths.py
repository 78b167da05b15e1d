"""Directory login through the guard against a real slapd: each path, and what it may never do.

Local names first, lockout before the directory, escaped filters, nested
groups over StartTLS, separation of duties, the offline cache (only when the
directory is unreachable, capped) and break-glass accounts (only then, with
an alarm).
"""

from __future__ import annotations

import asyncio
import copy
import os
import secrets
import signal
import stat
import time
from pathlib import Path
from typing import Any

from meterd.credentials import hash_secret
from meterd.guard import Password, Session
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.seclog import EventType, Record
from tests.directory.helpers import POLICY, directory_settings, ldap_settings, make_directory_guard
from tests.directory.slapd import GROUPS, Slapd, user_dn

SOURCE = "127.0.0.1:2222"
LOCAL_PASSWORD = "Local-7-" + secrets.token_urlsafe(12)  # made per run: no credential in the tree


def policy() -> dict[str, Any]:
    doc = copy.deepcopy(POLICY)
    hashed = hash_secret(LOCAL_PASSWORD, log2_n=14)
    doc["users"]["admin"]["password"] = hashed
    doc["users"]["breakglass"]["password"] = hashed
    return doc


def failures(records: list[Record], name: str) -> list[Record]:
    return [r for r in records if r.event is EventType.LOGIN_FAILURE and r.principal == name]


def test_nested_groups_over_starttls_with_an_escaped_filter(slapd: Slapd, tmp_path: Path) -> None:
    password = slapd.add_user("carol")
    inner = slapd.add_group("Shift-B", (user_dn("carol"),))
    slapd.add_group("Operators", (inner,))  # carol is an operator only through the nested group
    settings = ldap_settings(slapd, (slapd.ldap_uri,), start_tls=True, group_mode="member-search")
    rig = make_directory_guard(tmp_path, directory_settings(settings), policy())
    guard = rig.guard

    async def run() -> None:
        assert await guard.authenticate(Channel.SSH, SOURCE, "carol", Password(password))
        opened = await guard.open_session("carol", Channel.SSH, SOURCE, (Permission.TERMINAL_ACCESS,))
        assert isinstance(opened, Session)
        operator = guard.policy.roles["operator"].permissions
        assert guard.permitted(opened) == operator
        # A filter metacharacter is escaped: "*" is no wildcard, so no user matches.
        assert not await guard.authenticate(Channel.SSH, SOURCE, "*", Password(password))
        assert not await guard.authenticate(Channel.SSH, SOURCE, "carol)(uid=*", Password(password))
        # An empty password would be an anonymous bind: refused before any server is asked.
        assert not await guard.authenticate(Channel.SSH, SOURCE, "carol", Password(""))

    asyncio.run(run())
    records = rig.records()
    assert [r.detail["step"] for r in failures(records, "*")] == ["search"]
    assert [r.detail["server"] for r in failures(records, "*")] == [slapd.ldap_uri]
    assert [r.detail["step"] for r in failures(records, "carol")] == ["input"]
    rig.gate.close()


def test_local_names_are_reserved_and_lockout_applies_before_the_directory(
    slapd: Slapd, tmp_path: Path
) -> None:
    slapd.add_user("admin")  # a directory user with a local name never logs in through the directory
    dave = slapd.add_user("dave")
    slapd.add_group("Operators", (user_dn("dave"),))
    rig = make_directory_guard(tmp_path, directory_settings(ldap_settings(slapd)), policy())
    guard = rig.guard

    async def run() -> None:
        assert not await guard.authenticate(Channel.SSH, SOURCE, "admin", Password(slapd.passwords["admin"]))
        assert not await guard.authenticate(Channel.SSH, SOURCE, "ADMIN", Password(slapd.passwords["admin"]))
        for _ in range(guard.policy.settings.login_failure_threshold):
            assert not await guard.authenticate(Channel.SSH, SOURCE, "dave", Password("wrong-password"))
        # Locked: the right password is refused and the directory is not asked.
        assert not await guard.authenticate(Channel.SSH, SOURCE, "dave", Password(dave))

    asyncio.run(run())
    records = rig.records()
    assert all("path" not in r.detail for r in failures(records, "admin"))  # the local check refused
    assert [r.detail["reason"] for r in failures(records, "ADMIN")] == ["bad_credentials"]
    dave_failures = failures(records, "dave")
    assert dave_failures[-1].detail["reason"] == "locked"
    assert "server" not in dave_failures[-1].detail
    assert any(r.event is EventType.ACCOUNT_LOCKED and r.principal == "dave" for r in records)
    rig.gate.close()


def test_a_group_union_breaking_separation_of_duties_is_refused_and_recorded(
    slapd: Slapd, tmp_path: Path
) -> None:
    erin = slapd.add_user("erin")
    slapd.add_group("Admins", (user_dn("erin"),))
    slapd.add_group("Auditors", (user_dn("erin"),))
    rig = make_directory_guard(tmp_path, directory_settings(ldap_settings(slapd)), policy())
    assert not asyncio.run(rig.guard.authenticate(Channel.SSH, SOURCE, "erin", Password(erin)))
    (failure,) = failures(rig.records(), "erin")
    assert failure.detail["reason"] == "sod_violation"
    assert "erin" not in rig.guard.policy.directory_principals
    rig.gate.close()


def test_offline_cache_only_when_unreachable_capped_and_recorded(slapd: Slapd, tmp_path: Path) -> None:
    frank = slapd.add_user("frank")
    slapd.add_group("Admins", (user_dn("frank"),))
    rig = make_directory_guard(tmp_path, directory_settings(ldap_settings(slapd)), policy())
    guard = rig.guard
    cache = tmp_path / "directory-cache.json"

    async def online() -> None:
        assert await guard.authenticate(Channel.SSH, SOURCE, "frank", Password(frank))
        # A wrong guess is refused by the directory and leaves frank's offline login alone.
        assert not await guard.authenticate(Channel.SSH, SOURCE, "frank", Password(frank + "x"))

    asyncio.run(online())
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert "frank" in cache.read_text()
    assert frank not in cache.read_text()  # a hash, never the password
    slapd.kill()

    async def offline() -> Session:
        assert not await guard.authenticate(Channel.SSH, SOURCE, "frank", Password(frank + "x"))
        assert await guard.authenticate(Channel.SSH, SOURCE, "frank", Password(frank))
        opened = await guard.open_session("frank", Channel.SSH, SOURCE, (Permission.TERMINAL_ACCESS,))
        assert isinstance(opened, Session)
        return opened

    opened = asyncio.run(offline())
    rbacmnt = guard.policy.roles["rbacmnt"].permissions
    assert Permission.USER_MANAGEMENT in rbacmnt
    assert guard.permitted(opened) == rbacmnt - {Permission.USER_MANAGEMENT, Permission.FIRMWARE_MANAGEMENT}
    records = rig.records()
    assert failures(records, "frank")[-1].detail["reason"] == "directory_unreachable"
    (offline_record,) = [r for r in records if r.detail.get("offline_login")]
    assert offline_record.detail["path"] == "offline-cache"
    login = [r for r in records if r.event is EventType.LOGIN_SUCCESS and r.principal == "frank"][-1]
    assert login.detail["path"] == "offline-cache"
    rig.gate.close()


def test_a_password_the_directory_refuses_is_not_usable_offline(slapd: Slapd, tmp_path: Path) -> None:
    old = slapd.add_user("gail")
    slapd.add_group("Operators", (user_dn("gail"),))
    rig = make_directory_guard(tmp_path, directory_settings(ldap_settings(slapd)), policy())
    guard = rig.guard
    assert asyncio.run(guard.authenticate(Channel.SSH, SOURCE, "gail", Password(old)))
    # The password is changed in the directory; the old one is then refused there.
    slapd.ldif(
        f"dn: {user_dn('gail')}\nchangetype: modify\nreplace: userPassword\nuserPassword: {old}-new\n",
        modify=True,
    )
    assert not asyncio.run(guard.authenticate(Channel.SSH, SOURCE, "gail", Password(old)))
    slapd.kill()
    assert not asyncio.run(guard.authenticate(Channel.SSH, SOURCE, "gail", Password(old)))
    assert failures(rig.records(), "gail")[-1].detail["reason"] == "directory_unreachable"
    rig.gate.close()


def test_break_glass_only_while_the_directory_is_unreachable_with_an_alarm(
    slapd: Slapd, tmp_path: Path
) -> None:
    rig = make_directory_guard(tmp_path, directory_settings(ldap_settings(slapd)), policy())
    guard = rig.guard

    async def attempt() -> Session | object:
        assert await guard.authenticate(Channel.SSH, SOURCE, "breakglass", Password(LOCAL_PASSWORD))
        return await guard.open_session("breakglass", Channel.SSH, SOURCE, (Permission.TERMINAL_ACCESS,))

    assert not isinstance(asyncio.run(attempt()), Session)
    assert failures(rig.records(), "breakglass")[-1].detail["reason"] == "break_glass_directory_reachable"
    slapd.kill()
    opened = asyncio.run(attempt())
    assert isinstance(opened, Session)
    records = rig.records()
    (alarm,) = [r for r in records if r.event is EventType.ALARM]
    assert alarm.principal == "breakglass"
    assert alarm.detail["alarm"] == "break_glass_login"
    login = [r for r in records if r.event is EventType.LOGIN_SUCCESS and r.principal == "breakglass"][-1]
    assert login.detail["path"] == "break-glass"
    assert GROUPS  # the directory's groups are not consulted for a local account
    rig.gate.close()


def test_a_upn_login_is_searched_by_user_principal_name(slapd: Slapd, tmp_path: Path) -> None:
    password = slapd.add_user("ivy", upn="ivy@utility.example")
    slapd.add_group("Operators", (user_dn("ivy"),))
    settings = directory_settings(ldap_settings(slapd, upn_suffix="utility.example"))
    rig = make_directory_guard(tmp_path, settings, policy())

    async def run() -> tuple[bool, bool]:
        upn = await rig.guard.authenticate(Channel.SSH, SOURCE, "Ivy@Utility.Example", Password(password))
        # Another suffix is no UPN login: the uid filter finds nobody by that name.
        other = await rig.guard.authenticate(Channel.SSH, SOURCE, "ivy@elsewhere.example", Password(password))
        return upn, other

    assert asyncio.run(run()) == (True, False)
    assert "Ivy@Utility.Example" in rig.guard.policy.directory_principals
    rig.gate.close()


def test_break_glass_trusts_a_recent_unreachable_verdict_and_asks_again_once_it_ages(
    slapd: Slapd, tmp_path: Path
) -> None:
    """Break-glass does not wait out a probe while the directory is known down, yet works only then."""
    now = [1000.0]
    settings = directory_settings(ldap_settings(slapd), login_timeout=1.5, reachability_max_age=10.0)
    rig = make_directory_guard(tmp_path, settings, policy(), directory_clock=lambda: now[0])
    guard = rig.guard
    frank = slapd.add_user("frank")
    slapd.add_group("Operators", (user_dn("frank"),))

    async def break_glass() -> tuple[bool, float]:
        assert await guard.authenticate(Channel.SSH, SOURCE, "breakglass", Password(LOCAL_PASSWORD))
        started = time.monotonic()
        opened = await guard.open_session("breakglass", Channel.SSH, SOURCE, (Permission.TERMINAL_ACCESS,))
        return isinstance(opened, Session), time.monotonic() - started

    assert slapd.process is not None
    os.kill(slapd.process.pid, signal.SIGSTOP)  # a stalled directory: every attempt waits its budget
    try:
        assert not asyncio.run(guard.authenticate(Channel.SSH, SOURCE, "frank", Password(frank)))
        assert failures(rig.records(), "frank")[-1].detail["reason"] == "directory_unreachable"
        # That login's verdict lets break-glass in at once (no probe waiting out 1.5 s).
        allowed, took = asyncio.run(break_glass())
        assert allowed
        assert took < 0.5
        # An aged verdict is not trusted: the directory is asked again (and is still down).
        now[0] += 11
        allowed, took = asyncio.run(break_glass())
        assert allowed
        assert took >= 1.0
    finally:
        os.kill(slapd.process.pid, signal.SIGCONT)
    # The directory is back: the next attempt that reaches it replaces the fresh verdict.
    assert asyncio.run(guard.authenticate(Channel.SSH, SOURCE, "frank", Password(frank)))
    allowed, _ = asyncio.run(break_glass())
    assert not allowed
    assert failures(rig.records(), "breakglass")[-1].detail["reason"] == "break_glass_directory_reachable"
    assert len([r for r in rig.records() if r.event is EventType.ALARM]) == 2
    rig.gate.close()
