"""Documentation of ``meterd.meter.policy_info``; the work is done by the action plugin of the same name."""

from __future__ import annotations

DOCUMENTATION = r"""
module: policy_info
short_description: Report a meter's policy version, bundle version, policy hash and meter id
description:
  - Runs C(meterd-policy status) on the meter over its own SSH server with the controller's OpenSSH client.
options:
  host: {description: Meter address (default ansible_host)., type: str}
  port: {description: Meter SSH port (default ansible_port)., type: int}
  user: {description: Meter user holding user_management (default ansible_user)., type: str}
  identity: {description: SSH private key (default ansible_ssh_private_key_file)., type: path}
  known_hosts: {description: known_hosts with the meters' host keys (default meterd_known_hosts)., type: path}
  ssh_options: {description: Extra C(ssh -o) options., type: list, elements: str}
"""


def main() -> None:
    """Refuse to run on a host: this module runs as an action plugin on the controller."""
    raise SystemExit("meterd.meter.policy_info runs on the controller as an action plugin")


if __name__ == "__main__":
    main()
