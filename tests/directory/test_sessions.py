"""Directory sessions: kept in force between login and session, bounded in time, per channel."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

from meterd.guard import Password, Session
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.seclog import EventType
from tests.directory.helpers import POLICY, directory_settings, ldap_settings, make_directory_guard
from tests.directory.slapd import Slapd, user_dn

SOURCE = "127.0.0.1:2022"


def test_a_sweep_between_login_and_session_keeps_the_principal_and_the_lifetime_ends_it(
    slapd: Slapd, tmp_path: Path
) -> None:
    password = slapd.add_user("gina")
    slapd.add_group("Operators", (user_dn("gina"),))
    clock = [1000.0]
    settings = directory_settings(ldap_settings(slapd), session_lifetime=600.0)
    rig = make_directory_guard(tmp_path, settings, monotonic=lambda: clock[0])
    guard = rig.guard

    async def run() -> Session:
        assert await guard.authenticate(Channel.SSH, SOURCE, "gina", Password(password))
        # The housekeeping sweep may run between the password check and the session request.
        clock[0] += 5
        await guard.sweep()
        opened = await guard.open_session("gina", Channel.SSH, SOURCE, (Permission.TERMINAL_ACCESS,))
        assert isinstance(opened, Session), opened
        # Active all along, the session still ends at its lifetime.
        for _ in range(3):
            clock[0] += 200
            allowed = await guard.authorize(opened, Permission.TERMINAL_ACCESS, "/meter")
            assert allowed.allowed
        await guard.sweep()
        return opened

    opened = asyncio.run(run())
    assert opened.closed
    assert "gina" not in guard.policy.directory_principals
    logout = [r for r in rig.records() if r.event is EventType.LOGOUT_TIMEOUT][-1]
    assert logout.principal == "gina"
    assert logout.detail["reason"] == "session lifetime reached"
    rig.gate.close()


def test_channels_outside_the_directory_setting_never_ask_it(slapd: Slapd, tmp_path: Path) -> None:
    password = slapd.add_user("hank")
    slapd.add_group("Operators", (user_dn("hank"),))
    settings = directory_settings(ldap_settings(slapd), channels=frozenset({Channel.SERIAL}))
    rig = make_directory_guard(tmp_path, settings)
    guard = rig.guard

    async def run() -> tuple[bool, bool]:
        ssh = await guard.authenticate(Channel.SSH, SOURCE, "hank", Password(password))
        serial = await guard.authenticate(Channel.SERIAL, "/dev/ttyS1", "hank", Password(password))
        return ssh, serial

    assert asyncio.run(run()) == (False, True)
    failure = [r for r in rig.records() if r.event is EventType.LOGIN_FAILURE][-1]
    assert failure.channel is Channel.SSH
    assert failure.detail["reason"] == "bad_credentials"  # the local check, not the directory
    rig.gate.close()


def test_a_new_policy_applies_to_directory_sessions_at_once(slapd: Slapd, tmp_path: Path) -> None:
    password = slapd.add_user("kim")
    slapd.add_group("Operators", (user_dn("kim"),))
    rig = make_directory_guard(tmp_path, directory_settings(ldap_settings(slapd)))
    guard = rig.guard

    async def login() -> Session:
        assert await guard.authenticate(Channel.SSH, SOURCE, "kim", Password(password))
        opened = await guard.open_session("kim", Channel.SSH, SOURCE, (Permission.TERMINAL_ACCESS,))
        assert isinstance(opened, Session)
        return opened

    opened = asyncio.run(login())
    assert Permission.PEAK_DEMAND_RESET in guard.permitted(opened)
    # A push maps the operators' directory group to the viewer role instead.
    doc = copy.deepcopy(POLICY)
    doc["groups"]["operators"]["roles"] = ["viewer"]
    guard.install_policy(compile_policy(load_policy(doc)))
    assert guard.permitted(opened) == guard.policy.roles["viewer"].permissions
    # And a push that drops the group leaves the session nothing.
    del doc["groups"]["operators"]
    guard.install_policy(compile_policy(load_policy(doc)))
    assert guard.permitted(opened) == frozenset()
    rig.gate.close()


def test_a_local_user_added_with_a_directory_users_name_does_not_inherit_their_session(
    slapd: Slapd, tmp_path: Path
) -> None:
    password = slapd.add_user("lou")
    slapd.add_group("Operators", (user_dn("lou"),))
    rig = make_directory_guard(tmp_path, directory_settings(ldap_settings(slapd)))
    guard = rig.guard

    async def run() -> tuple[bool, bool]:
        assert await guard.authenticate(Channel.SSH, SOURCE, "lou", Password(password))
        opened = await guard.open_session("lou", Channel.SSH, SOURCE, (Permission.TERMINAL_ACCESS,))
        assert isinstance(opened, Session)
        before = (await guard.authorize(opened, Permission.TERMINAL_ACCESS, "/meter")).allowed
        # A push adds a local user "lou" holding user management: the directory user's open
        # session must not act with the local user's grants.
        doc = copy.deepcopy(POLICY)
        doc["users"]["lou"] = {"roles": ["rbacmnt"]}
        guard.install_policy(compile_policy(load_policy(doc)))
        after = await guard.authorize(opened, Permission.USER_MANAGEMENT, "/meter/users")
        assert guard.permitted(opened) == frozenset()
        return before, after.allowed

    assert asyncio.run(run()) == (True, False)
    rig.gate.close()
