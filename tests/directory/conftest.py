"""Fixtures shared by the directory-login tests: a real OpenLDAP server, a real meterd."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.daemon.conftest import start_daemon
from tests.directory.slapd import Slapd, find

__all__ = ["slapd", "start_daemon"]


@pytest.fixture
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A fresh slapd with the base entries (no users or groups yet)."""
    if find("slapd") is None:
        pytest.fail("slapd is not installed: run scripts/system-deps.sh")
    server = Slapd.start(tmp_path_factory.mktemp("slapd"))
    try:
        yield server
    finally:
        server.stop()
