"""One running SSH listener shared by the module's tests (starting one costs a host key and a log)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.channels.ssh.harness import Server, build, have_clients


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not have_clients():
        pytest.skip("OpenSSH clients (ssh, sftp, ssh-keygen) and sshpass are needed")
    root: Path = tmp_path_factory.mktemp("ssh")
    running = build(root)
    running.start()
    yield running
    running.stop()
