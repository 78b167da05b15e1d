"""Directory metrics: login results by backend and reachability, with closed label sets, promtool-clean."""

from __future__ import annotations

import asyncio
from pathlib import Path

from meterd.directory.backend import LOGIN_OUTCOMES
from meterd.guard import Password
from meterd.metrics import MeterdMetrics
from meterd.policy.request import Channel
from tests.directory.helpers import directory_settings, ldap_settings, make_directory_guard
from tests.directory.slapd import Slapd, user_dn
from tests.metrics.helpers import label_values, promtool_check, sample_value, scrape

SOURCE = "127.0.0.1:4000"


def test_directory_logins_are_counted_by_backend_and_result(slapd: Slapd, tmp_path: Path) -> None:
    password = slapd.add_user("jane")
    slapd.add_group("Operators", (user_dn("jane"),))
    metrics = MeterdMetrics()
    rig = make_directory_guard(tmp_path, directory_settings(ldap_settings(slapd)), observer=metrics)
    guard = rig.guard

    async def online() -> None:
        assert await guard.authenticate(Channel.SSH, SOURCE, "jane", Password(password))
        assert not await guard.authenticate(Channel.SSH, SOURCE, "jane", Password("not-her-password"))

    asyncio.run(online())
    body = scrape(metrics)
    assert sample_value(body, "meterd_directory_logins_total", backend="ldap", result="success") == 1
    assert sample_value(body, "meterd_directory_logins_total", backend="ldap", result="refused") == 1
    assert sample_value(body, "meterd_directory_reachable", backend="ldap") == 1

    slapd.kill()
    asyncio.run(guard.authenticate(Channel.SSH, SOURCE, "jane", Password(password)))
    body = scrape(metrics)
    assert sample_value(body, "meterd_directory_logins_total", backend="ldap", result="offline") == 1
    assert sample_value(body, "meterd_directory_reachable", backend="ldap") == 0
    values = label_values(body)
    assert values["backend"] <= {"ldap", "radius"}
    assert values["result"] <= {*LOGIN_OUTCOMES, "ok", "refused"}  # policy loads share "result"
    assert "jane" not in body.decode()
    assert promtool_check(body) == ""
    rig.gate.close()
