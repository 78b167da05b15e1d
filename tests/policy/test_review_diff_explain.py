"""Access review, policy diff and explanations."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from meterd.policy.compile import compile_policy
from meterd.policy.diff import diff_policies
from meterd.policy.explain import explain
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.policy.review import render_csv, render_json, render_table, review_rows
from meterd.policy.table import Verdict

DOC: dict[str, Any] = {
    "scopes": {"paths": ["/files/data/feeder-a"]},
    "users": {
        "admin": {"roles": ["rbacmnt"]},
        "tom": {"roles": ["viewer"], "scopes": ["/files/data/feeder-a", "/meter"]},
        "off": {"roles": ["installer"], "enabled": False},
    },
    "groups": {"ops": {"members": ["tom"], "roles": ["operator"], "scopes": ["/meter/demand"]}},
    "constraints": {"channel_caps": {"panel": {"deny": ["fs_read_only"]}}},
}


def test_review_covers_every_principal_and_permission() -> None:
    rows = review_rows(load_policy(DOC))
    assert len(rows) == 4 * 17  # admin, off, tom, anonymous
    by = {(r.principal, r.permission): r for r in rows}
    tom_reset = by["tom", Permission.PEAK_DEMAND_RESET]
    assert tom_reset.sources == ("operator via ops @ /meter/demand",)
    assert by["tom", Permission.FS_READ_ONLY].capped_on == (Channel.PANEL,)
    assert not by["off", Permission.MASTER_RESET].enabled
    assert not by["anonymous", Permission.TIME_SYNC].held


def test_review_formats() -> None:
    rows = review_rows(load_policy(DOC))
    parsed = json.loads(render_json(rows))
    assert len(parsed) == len(rows)
    assert {"principal", "permission", "held", "sources"} <= parsed[0].keys()
    table = list(csv.DictReader(io.StringIO(render_csv(rows))))
    assert len(table) == len(rows)
    text = render_table(rows)
    assert "off (disabled)" in text
    assert "16 = user_management" in text
    tom_line = next(line for line in text.splitlines() if line.startswith("tom "))
    assert tom_line.split()[1 + Permission.PEAK_DEMAND_RESET.bit] == "G"
    assert tom_line.split()[1 + Permission.TERMINAL_ACCESS.bit] == "B"


def test_diff_names_gains_and_losses() -> None:
    old = load_policy(DOC)
    new_doc = {**DOC, "users": {**DOC["users"], "tom": {"roles": ["engineer"], "scopes": ["/meter"]}}}
    changes = {c.render() for c in diff_policies(old, load_policy(new_doc))}
    assert "+ tom: comm_config @ /meter" in changes
    assert "- tom: fs_read_only @ /files/data/feeder-a" in changes
    assert not any(c.startswith("+ tom: fs_read_only") for c in changes)  # already held at /meter
    assert diff_policies(old, old) == []


def test_diff_sees_role_redefinition_and_disable() -> None:
    doc = {
        **DOC,
        "roles": {"r": {"permissions": ["time_sync"]}},
        "users": {**DOC["users"], "al": {"roles": ["r"]}},
    }
    changed = {**doc, "roles": {"r": {"permissions": ["master_reset"]}}}
    rendered = [c.render() for c in diff_policies(load_policy(doc), load_policy(changed))]
    assert rendered == ["- al: time_sync @ /", "+ al: master_reset @ /"]
    disabled = {**doc, "users": {**doc["users"], "admin": {"roles": ["rbacmnt"], "enabled": False}}}
    assert all(not c.gained for c in diff_policies(load_policy(doc), load_policy(disabled)))


def test_explain_chain_of_reasons() -> None:
    compiled = compile_policy(load_policy(DOC))
    allowed = explain(compiled, "tom", Permission.PEAK_DEMAND_RESET, "/meter/demand", Channel.SSH)
    assert allowed.verdict is Verdict.ALLOW
    assert "operator via ops @ /meter/demand: grants peak_demand_reset for /meter/demand" in allowed.reasons
    assert "viewer @ /files/data/feeder-a,/meter: does not grant peak_demand_reset" in allowed.reasons
    denied = explain(compiled, "tom", Permission.PEAK_DEMAND_RESET, "/meter/clock", Channel.SSH)
    assert denied.verdict is Verdict.OUT_OF_SCOPE
    assert any("but not for /meter/clock" in r for r in denied.reasons)
    capped = explain(compiled, "tom", Permission.FS_READ_ONLY, "/files/data/feeder-a/x.csv", Channel.PANEL)
    assert capped.verdict is Verdict.CHANNEL_CAP
    assert "channel panel cap withholds fs_read_only" in capped.reasons
    unknown = explain(compiled, "ghost", Permission.TIME_SYNC, "/", Channel.SSH)
    assert unknown.verdict is Verdict.UNKNOWN_PRINCIPAL
    assert not unknown.allowed
    disabled = explain(compiled, "off", Permission.MASTER_RESET, "/", Channel.SSH)
    assert disabled.verdict is Verdict.DISABLED
    assert "off is disabled" in disabled.reasons
