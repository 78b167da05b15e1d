"""What each panel action needs, and running it on the meter after the guard allows it.

=============  =====================  ==================  ==========================
action         permission             resource            meter call
=============  =====================  ==================  ==========================
config         front_panel_config     /meter/settings     ``set_dss_settings``
restart        front_panel_restart    /meter              ``restart``
demand_reset   peak_demand_reset      /meter/demand       ``reset_peak_demand``
test_mode      test_mode_toggle       /meter              ``set_test_mode``
master_reset   master_reset           /meter              ``master_reset``
=============  =====================  ==================  ==========================

A panel "configuration change" sets the meter's setting values (DSS: wiring,
transformer ratios, demand interval), which is what a meter's front-panel
setup menu changes.  The guard applies the stateful rules (the demand-reset
lockout period, dual control, channel caps); this module only asks it and acts
on an allow.  Every record of a panel action says whether the meter was in
test mode, so test-mode work stands out in the security log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from meterd.channels.panel.protocol import Action, ActionKind, ErrorCode, failure, success
from meterd.errors import MeterError
from meterd.guard import Session
from meterd.guard.dual_control import PendingApproval
from meterd.meter.errors import MeterValueError
from meterd.meter.interface import Meter
from meterd.policy.permissions import Permission
from meterd.policy.request import Decision
from meterd.runtime import Runtime
from meterd.seclog import EventType
from meterd.seclog.events import DetailValue

#: Longest settings summary put in a record.
MAX_DETAIL_TEXT = 200

#: action → (permission, resource)
NEEDS: dict[ActionKind, tuple[Permission, str]] = {
    ActionKind.CONFIG: (Permission.FRONT_PANEL_CONFIG, "/meter/settings"),
    ActionKind.RESTART: (Permission.FRONT_PANEL_RESTART, "/meter"),
    ActionKind.DEMAND_RESET: (Permission.PEAK_DEMAND_RESET, "/meter/demand"),
    ActionKind.TEST_MODE: (Permission.TEST_MODE_TOGGLE, "/meter"),
    ActionKind.MASTER_RESET: (Permission.MASTER_RESET, "/meter"),
}

#: How an allowed action is recorded (the guard's default unless listed).
EVENTS: dict[ActionKind, EventType] = {
    ActionKind.CONFIG: EventType.CONFIG_CHANGE,
    ActionKind.RESTART: EventType.REBOOT,
    ActionKind.DEMAND_RESET: EventType.DEMAND_RESET,
    ActionKind.TEST_MODE: EventType.VALUE_FORCING,
    ActionKind.MASTER_RESET: EventType.MASTER_RESET,
}

#: The login check: a panel session opens for anyone who may use one of its actions.
LOGIN_PERMISSIONS: tuple[Permission, ...] = tuple(permission for permission, _ in NEEDS.values())
LOGIN_RESOURCE = "/meter"


def denied(decision: Decision, ref: Any = None) -> dict[str, Any]:
    """Return the answer for a refusing decision."""
    reason = decision.reason.value if decision.reason else decision.outcome.value
    return failure(
        ErrorCode.DENIED,
        decision.detail or "denied",
        ref,
        permission=decision.request.permission.value,
        reason=reason,
    )


def _detail(meter: Meter, op: Action) -> dict[str, DetailValue]:
    detail: dict[str, DetailValue] = {"action": op.action.value, "test_mode": meter.test_mode()}
    if op.on is not None:
        detail["set_test_mode"] = "on" if op.on else "off"
    if op.settings:
        detail["settings"] = ",".join(f"{k}={v}" for k, v in op.settings)[:MAX_DETAIL_TEXT]
    return detail


def _describe(op: Action) -> str:
    if op.action is ActionKind.TEST_MODE:
        return f"panel: test mode {'on' if op.on else 'off'}"
    if op.action is ActionKind.CONFIG:
        return "panel: change " + ", ".join(k for k, _ in op.settings)
    return f"panel: {op.action.value.replace('_', ' ')}"


def _run(meter: Meter, op: Action) -> dict[str, Any]:
    """Perform an allowed action; return the answer's fields."""
    if op.action is ActionKind.CONFIG:
        return {"settings": dataclasses.asdict(meter.set_dss_settings(dict(op.settings)))}
    if op.action is ActionKind.RESTART:
        status = meter.restart()
        return {"restart_count": status.restart_count, "test_mode": status.test_mode}
    if op.action is ActionKind.DEMAND_RESET:
        reset = meter.reset_peak_demand()
        return {"previous_peak_kw": reset.previous.kw, "reset_at": reset.reset_at}
    if op.action is ActionKind.TEST_MODE:
        meter.set_test_mode(bool(op.on))
        return {"test_mode": meter.test_mode()}
    report = meter.master_reset()
    return {
        "removed_files": len(report.removed_files),
        "energy_import_kwh": report.energy_import_kwh,
        "energy_export_kwh": report.energy_export_kwh,
    }


async def perform(
    runtime: Runtime, session: Session, op: Action, on_pending: Callable[[PendingApproval], None]
) -> dict[str, Any]:
    """Ask the guard for ``op`` and, on an allow, run it on the meter.

    Args:
        runtime: The daemon's guard and meter.
        session: The panel session asking.
        op: The parsed action.
        on_pending: Called if the action waits for a dual-control approver.

    Returns:
        The answer to send: the result, a denial, or the meter's refusal.
    """
    permission, resource = NEEDS[op.action]
    guard, meter = runtime.guard, runtime.meter
    detail = _detail(meter, op)
    decision = await guard.authorize(
        session,
        permission,
        resource,
        event=EVENTS[op.action],
        detail=detail,
        action=_describe(op),
        on_pending=on_pending,
    )
    if not decision.allowed:
        return denied(decision, op.ref)
    try:
        result = _run(meter, op)
    except MeterError as e:
        # The allow is already recorded; the failure gets its own record so the log shows nothing changed.
        code = ErrorCode.INVALID if isinstance(e, MeterValueError) else ErrorCode.FAILED
        await decision.failed({**detail, "error": str(e)[:MAX_DETAIL_TEXT]})
        return failure(code, str(e), op.ref)
    await decision.done()
    return success(op.ref, action=op.action.value, **result)
