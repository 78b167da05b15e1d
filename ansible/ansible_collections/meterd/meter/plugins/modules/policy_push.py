"""Documentation of ``meterd.meter.policy_push``; the work is done by the action plugin of the same name."""

from __future__ import annotations

DOCUMENTATION = r"""
module: policy_push
short_description: Push a signed meterd policy bundle to a meter
description:
  - Runs C(meterd-policy push) on the meter over its own SSH server with the controller's OpenSSH client.
  - Check mode runs the meter's dry run; diff mode shows who gains and loses which permission.
  - Reports C(changed=false) when the meter already runs the bundle's policy.
options:
  bundle: {description: Controller path of a bundle from C(meterctl policy sign)., required: true, type: path}
  host: {description: Meter address (default ansible_host)., type: str}
  port: {description: Meter SSH port (default ansible_port)., type: int}
  user: {description: Meter user holding user_management (default ansible_user)., type: str}
  identity: {description: SSH private key (default ansible_ssh_private_key_file)., type: path}
  known_hosts: {description: known_hosts with the meters' host keys (default meterd_known_hosts)., type: path}
  ssh_options: {description: Extra C(ssh -o) options., type: list, elements: str}
"""


def main() -> None:
    """Refuse to run on a host: this module runs as an action plugin on the controller."""
    raise SystemExit("meterd.meter.policy_push runs on the controller as an action plugin")


if __name__ == "__main__":
    main()
