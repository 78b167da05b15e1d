"""Running ``meterd-policy`` on a meter with the controller's OpenSSH client (no remote shell or Python)."""

from __future__ import annotations

import subprocess
from typing import Any

TIMEOUT = 120
SSH_FAILURE = 255


class MeterTarget:
    """How to reach one meter: address, port, user, key, pinned host keys, extra ssh options."""

    def __init__(self, args: dict[str, Any], host_vars: dict[str, Any]) -> None:
        def pick(arg: str, var: str, default: Any = None) -> Any:
            value = args.get(arg)
            return value if value not in (None, "") else host_vars.get(var, default)

        self.host = str(pick("host", "ansible_host", host_vars.get("inventory_hostname")))
        self.port = int(pick("port", "ansible_port", 22))
        self.user = str(pick("user", "ansible_user", "rbacmnt"))
        self.identity = pick("identity", "ansible_ssh_private_key_file")
        self.known_hosts = pick("known_hosts", "meterd_known_hosts")
        self.ssh_options = list(args.get("ssh_options") or [])

    def argv(self, command: list[str]) -> list[str]:
        """The ssh command line that runs ``meterd-policy COMMAND`` on the meter."""
        argv = ["ssh", "-p", str(self.port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=30"]
        if self.identity:
            argv += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        for option in self.ssh_options:
            argv += ["-o", str(option)]
        return [*argv, f"{self.user}@{self.host}", "meterd-policy", *command]

    def run(self, command: list[str], payload: bytes = b"") -> tuple[int, str, str]:
        """Run a meterd-policy command; return (exit status, stdout, stderr)."""
        try:
            done = subprocess.run(
                self.argv(command), input=payload, capture_output=True, timeout=TIMEOUT, check=False
            )
        except FileNotFoundError:
            return SSH_FAILURE, "", "the OpenSSH client `ssh` is not installed on the controller"
        except subprocess.TimeoutExpired:
            return SSH_FAILURE, "", f"no answer from {self.host}:{self.port} within {TIMEOUT} s"
        return done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")


def failure(status: int, out: str, err: str, target: MeterTarget) -> str:
    """A one-paragraph reason for a failed command."""
    if status == SSH_FAILURE:
        return f"could not reach or log in to {target.host}:{target.port}: {err.strip()}"
    return (out.strip() or err.strip()) or f"meterd-policy exited with {status}"
