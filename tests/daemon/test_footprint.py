"""An idle meterd holds only what serving needs: rarely used parts load on first use.

The embedded default (every channel, the demo accounts and PKI) is started
for real in a fresh interpreter, twice; the second start is the usual one (the
state exists).  At READY the daemon prints the modules it has loaded and stops.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.daemon.conftest import embedded_default

# Runs meterd's own main(); at READY, prints sys.modules and asks itself to stop.
_PROBE = """
import json, os, signal, sys
from meterd.daemon import main, notify

send = notify.Notifier.send

def at_ready(self, **fields):
    if fields.get("READY") == "1":
        print(json.dumps(sorted(sys.modules)), flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
    return send(self, **fields)

notify.Notifier.send = at_ready
sys.exit(main.main(["--config", sys.argv[1], "--log-level", "ERROR"]))
"""

#: Loaded on first use only: a shell session, an SFTP session, a policy change or dry run, an
#: installed certificate, forwarding the log, a mistake to suggest a correction for.
RARELY_USED = (
    "meterd.shell",
    "meterd.shell.shell",
    "meterd.shell.commands",
    "meterd.shell.policy_edit",
    "meterd.channels.ssh.sftp",
    "meterd.channels.ssh.area",
    "meterd.policy.diff",
    "meterd.policy.dump",
    "meterd.meter.pem",
    "meterd.meter.der",
    "meterd.seclog.forwarder",
    "difflib",
    # A meter without [directory] never loads a directory client, its settings or its logins.
    "meterd.directory.ldap",
    "meterd.directory.radius",
    "meterd.directory.settings",
    "meterd.directory.radius_config",
    "meterd.directory.offline",
    "meterd.guard.directory_gate",
    "meterd.guard.directory_login",
    "ldap3",
    "pyasn1",
    # An auditor's check of the log (``log verify``): the verifier and its lean pass.
    "meterd.seclog.verify",
    "meterd.seclog.scan",
    "meterd.seclog.parts",
    "meterd.seclog.report",
    # A pushed bundle's verification (the key set and the gate's state are read at start).
    "meterd.policy.signed",
    # An SSH connection's code, and the serial console's once a terminal attaches.
    "meterd.channels.ssh.connection",
    "meterd.channels.ssh.terminal",
    "meterd.channels.serial.console",
    "meterd.channels.serial.terminal",
    "meterd.channels.serial.line",
)


def _modules_at_ready(config: Path) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(config)], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(out.stdout.splitlines()[0]))


def test_a_restarted_daemon_has_not_loaded_its_rarely_used_parts(tmp_path: Path) -> None:
    config, _ = embedded_default(tmp_path)
    _modules_at_ready(config)  # the first start: it stores the policy (with the dumper), makes the demo state
    loaded = _modules_at_ready(config)
    assert {
        "meterd.channels.ssh.listener",
        "meterd.channels.serial.listener",
        "meterd.channels.modbus.listener",
        "meterd.daemon.bundle_gate",
    } <= loaded
    assert sorted(loaded.intersection(RARELY_USED)) == []
