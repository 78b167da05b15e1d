"""``meterd.meter.policy_push``: push a policy bundle with ``meterd-policy push`` over the meter's SSH."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase
from ansible_collections.meterd.meter.plugins.action.policy_info import connection_vars, meter_status
from ansible_collections.meterd.meter.plugins.module_utils.meterd_ssh import MeterTarget, failure


def bundle_hash(raw: bytes) -> str:
    """The SHA-256 of the bundle's policy text (what the meter reports for the bundle in force)."""
    obj = json.loads(raw)
    if obj.get("format") == 2:
        return str(obj["signed"]["policy_sha256"])
    return hashlib.sha256(str(obj["policy"]).encode("utf-8")).hexdigest()


def access_changes(out: str) -> list[str]:
    """The meter's "+ who: permission @ scope" and "- ..." lines."""
    return [line for line in out.splitlines() if line.startswith(("+ ", "- "))]


class ActionModule(ActionBase):
    """Push a bundle; check mode is the meter's dry run; diff mode lists access changes."""

    _supports_check_mode = True
    TRANSFERS_FILES = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        """Push the bundle named by ``bundle`` (a file on the controller) unless the meter runs it already."""
        result = super().run(tmp, task_vars)
        path = self._task.args.get("bundle")
        if not path:
            return {
                **result,
                "failed": True,
                "msg": "bundle: the path of a bundle from `meterctl policy sign`",
            }
        try:
            raw = Path(path).read_bytes()
            sha = bundle_hash(raw)
        except (OSError, ValueError, KeyError, TypeError) as e:
            return {**result, "failed": True, "msg": f"{path}: not a policy bundle ({e})"}
        target = MeterTarget(self._task.args, connection_vars(self, task_vars or {}))
        report, problem = meter_status(target)
        if report is None:
            return {**result, "failed": True, "msg": problem}
        if report.get("bundle_sha256") == sha:
            return {
                **result,
                "changed": False,
                "msg": "the meter already runs this bundle's policy",
                "meter": report,
            }
        command = ["push", "--dry-run"] if self._play_context.check_mode else ["push"]
        status, out, err = target.run(command, raw)
        changes = access_changes(out)
        if status != 0:
            return {**result, "failed": True, "msg": failure(status, out, err, target), "meter": report}
        result.update(
            changed=True, msg=out.splitlines()[0] if out else "", access_changes=changes, meter=report
        )
        if self._task.diff:
            result["diff"] = {"prepared": "\n".join(changes) if changes else "(no access changes)"}
        return result
