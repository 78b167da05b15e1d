"""The README's push and rollback block, run as written against the embedded default.

The block is read out of README.md, so the README and this test cannot drift.
The embedded default is copied into a scratch checkout (``config/``, and
``.venv`` linked to the real one) and started from its root as ``make run``
does; the one change is the SSH port, the copy's free port instead of 2222.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from meterd.seclog import EventType, Query, read_records
from tests.daemon.conftest import ROOT, RunningDaemon, embedded_default

SECTION = "## Pushing policy from the configuration tool\n"
REMOTE = re.compile(r"^meterctl policy (push|rollback) ", re.MULTILINE)


class StartDaemon(Protocol):
    def __call__(
        self, config: Path, *, state_dir: Path | None = None, prefix: Sequence[str] = (), cwd: Path = ...
    ) -> RunningDaemon: ...


def readme_push_block() -> str:
    """The first ``sh`` block of the README's push section."""
    section = (ROOT / "README.md").read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_readme_push_and_rollback_work_against_the_embedded_default(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    block = readme_push_block()
    remote = REMOTE.findall(block)
    assert remote == ["push", "push", "rollback", "push"]
    # Every remote command names the embedded default's SSH port: the one thing this test changes.
    assert block.count("--port 2222 ") == len(remote)
    checkout = tmp_path / "checkout"
    _, ports = embedded_default(checkout)
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    daemon = start_daemon(Path("config/daemon/meterd.toml"), state_dir=checkout / "var", cwd=checkout)
    daemon.wait_for("READY=1")

    script = block.replace("--port 2222 ", f"--port {ports[2222]} ")
    run = subprocess.run(
        ["bash", "-e", "-c", script], cwd=checkout, capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    applied = [line for line in run.stdout.splitlines() if line.startswith(("applied:", "dry run:"))]
    assert applied == [
        "dry run: nothing applied",
        "applied: policy store version 2",
        "applied: policy store version 3",
        "applied: policy store version 4",
    ]
    assert "var/cae-signing.pem: private key" in run.stdout

    # The pinned host key is the only one accepted.
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    first = script.split("\n")[1:3]
    wrong = "\n".join(first).replace("var/ssh/ssh_host_ed25519_key.pub", f"{other}.pub")
    refused = subprocess.run(
        ["bash", "-e", "-c", f"{block.splitlines()[0]}\n{wrong}"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "Host key verification failed" in refused.stderr

    assert daemon.stop()[0] == 0
    changes = read_records(
        checkout / "var" / "security-log", Query(events=frozenset({EventType.POLICY_CHANGE}))
    )
    assert [(r.principal, r.outcome.value, r.detail.get("how")) for r in changes] == [
        ("rbacmnt", "allow", "push"),
        ("rbacmnt", "allow", "rollback"),
        ("rbacmnt", "allow", "push"),
    ]
    assert (checkout / "var" / "policy" / "current").read_text().strip() == "4"
