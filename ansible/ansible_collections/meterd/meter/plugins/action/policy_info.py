"""``meterd.meter.policy_info``: what policy and bundle a meter runs (``meterd-policy status``)."""

from __future__ import annotations

import json
from typing import Any

from ansible.plugins.action import ActionBase
from ansible_collections.meterd.meter.plugins.module_utils.meterd_ssh import MeterTarget, failure


def connection_vars(action: ActionBase, task_vars: dict[str, Any]) -> dict[str, Any]:
    """The inventory variables a meter connection uses, templated."""
    names = ("ansible_host", "ansible_port", "ansible_user", "ansible_ssh_private_key_file")
    found = {n: task_vars[n] for n in (*names, "meterd_known_hosts", "inventory_hostname") if n in task_vars}
    return dict(action._templar.template(found))


def meter_status(target: MeterTarget) -> tuple[dict[str, Any] | None, str]:
    """The meter's status report, or None and why not."""
    status, out, err = target.run(["status"])
    if status != 0:
        return None, failure(status, out, err, target)
    try:
        return dict(json.loads(out)), ""
    except ValueError:
        return None, f"meterd-policy status did not answer JSON: {out.strip()[:200]}"


class ActionModule(ActionBase):
    """Report the meter's id, labels, policy version, bundle version and policy hash."""

    _supports_check_mode = True
    TRANSFERS_FILES = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run ``meterd-policy status`` on the meter."""
        result = super().run(tmp, task_vars)
        target = MeterTarget(self._task.args, connection_vars(self, task_vars or {}))
        report, problem = meter_status(target)
        if report is None:
            return {**result, "failed": True, "msg": problem}
        return {**result, "changed": False, "meter": report, **report}
