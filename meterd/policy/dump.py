"""Writing a :class:`Policy` back as ``policy.toml`` text.

Pure.  The output loads back into an equal policy (a property test checks
this); built-in roles and the meter's own scope nodes are not written, since
every policy has them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields

from meterd.policy.model import PasswordRules, Policy, Settings
from meterd.policy.scope import METER_RESOURCES, ROOT


def _string(value: str) -> str:
    # A JSON string is a valid TOML basic string (both escape the same way for our characters).
    return json.dumps(value, ensure_ascii=False)


def _array(values: Iterable[str]) -> str:
    return "[" + ", ".join(_string(v) for v in values) + "]"


def _key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() and name.isascii() else _string(name)


def dump_policy(policy: Policy) -> str:
    """Return ``policy`` as policy-file text."""
    out = ["[policy]", f"name = {_string(policy.name)}", f"version = {policy.version}", ""]
    out += _settings(policy.settings)
    extra = [p for p in policy.scopes.paths if p != ROOT and p not in METER_RESOURCES]
    if extra:
        out += ["[scopes]", f"paths = {_array(extra)}", ""]
    constraints = policy.constraints
    out.append("[constraints]")
    pairs = ", ".join(
        f"[{_string(a.value)}, {_string(b.value)}]" for a, b in constraints.separation_of_duties
    )
    out.append(f"separation_of_duties = [{pairs}]")
    out.append(f"dual_control = {_array(sorted(p.value for p in constraints.dual_control))}")
    out.append("")
    for channel, cap in sorted(constraints.channel_caps.items(), key=lambda kv: kv[0].index):
        out += [
            f"[constraints.channel_caps.{channel.value}]",
            f"permissions = {_array(sorted(p.value for p in cap))}",
            "",
        ]
    for name, role in sorted(policy.roles.items()):
        if role.builtin:
            continue
        out += [
            f"[roles.{_key(name)}]",
            f"description = {_string(role.description)}",
            f"permissions = {_array(sorted(p.value for p in role.permissions))}",
            "",
        ]
    for name, user in sorted(policy.users.items()):
        out += [f"[users.{_key(name)}]", f"roles = {_array(user.roles)}"]
        if user.password_hash:
            out.append(f"password = {_string(user.password_hash)}")
        if user.pin_hash:
            out.append(f"pin = {_string(user.pin_hash)}")
        out += [
            f"ssh_keys = {_array(user.ssh_keys)}",
            f"scopes = {_array(user.scopes)}",
            f"enabled = {str(user.enabled).lower()}",
            f"full_name = {_string(user.full_name)}",
        ]
        if user.break_glass:
            out.append("break_glass = true")
        out.append("")
    for name, group in sorted(policy.groups.items()):
        out += [
            f"[groups.{_key(name)}]",
            f"members = {_array(group.members)}",
            f"roles = {_array(group.roles)}",
            f"scopes = {_array(group.scopes)}",
        ]
        if group.directory_group:
            out.append(f"directory_group = {_string(group.directory_group)}")
        out.append("")
    for name, app in sorted(policy.applications.items()):
        out += [
            f"[applications.{_key(name)}]",
            f"roles = {_array(app.roles)}",
            f"cert_fingerprints = {_array(app.cert_fingerprints)}",
            f"ssh_keys = {_array(app.ssh_keys)}",
            f"scopes = {_array(app.scopes)}",
            f"enabled = {str(app.enabled).lower()}",
            f"description = {_string(app.description)}",
            "",
        ]
    out += [
        "[anonymous]",
        f"roles = {_array(policy.anonymous.roles)}",
        f"scopes = {_array(policy.anonymous.scopes)}",
    ]
    return "\n".join(out) + "\n"


def _settings(settings: Settings) -> list[str]:
    out = ["[settings]"]
    out += [f"{f.name} = {getattr(settings, f.name)}" for f in fields(Settings) if f.name != "password"]
    out += ["", "[settings.password]"]
    out += [f"{f.name} = {getattr(settings.password, f.name)}" for f in fields(PasswordRules)]
    return [*out, ""]
