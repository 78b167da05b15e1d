"""Hypothesis strategies: random but valid policy files, and requests against them."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from meterd.policy.builtin import BUILTIN_BY_NAME
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel

SCOPE_POOL = (
    "/",
    "/files",
    "/files/data",
    "/files/data/feeder-a",
    "/files/data/feeder-b",
    "/files/firmware",
    "/meter",
    "/meter/demand",
    "/modbus",
    "/modbus/unit/1",
    "/modbus/unit/2",
)
RESOURCE_POOL = (
    *SCOPE_POOL,
    "/files/data/feeder-a/2026-11.csv",
    "/files/data/other.csv",
    "/files/certs/ca.pem",
    "/modbus/unit/3",
    "/nowhere/at/all",
    "/files/data/../firmware",
    "relative/path",
    "/files//data",
    "/files/data/",
)
PERMISSION_IDS = [p.value for p in Permission]
USER_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank")
APP_NAMES = ("scada", "cae", "collector")


@st.composite
def policy_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Draw a valid ``policy.toml`` document as the dict ``tomllib`` would return."""
    doc: dict[str, Any] = {"policy": {"version": draw(st.integers(0, 2**32 - 1))}}
    doc["scopes"] = {"paths": [p for p in SCOPE_POOL if p != "/"]}
    custom = draw(
        st.lists(st.sampled_from(("tech", "reader", "admin2", "field", "ops")), unique=True, max_size=4)
    )
    doc["roles"] = {
        name: {
            "permissions": draw(
                st.lists(st.sampled_from(PERMISSION_IDS), unique=True, min_size=1, max_size=8)
            )
        }
        for name in custom
    }
    role_names = [*BUILTIN_BY_NAME, *custom]
    roles = st.lists(st.sampled_from(role_names), unique=True, max_size=3)
    scopes = st.lists(st.sampled_from(SCOPE_POOL), unique=True, min_size=1, max_size=3)

    def principal() -> dict[str, Any]:
        entry: dict[str, Any] = {"roles": draw(roles)}
        if draw(st.booleans()):
            entry["scopes"] = draw(scopes)
        if draw(st.integers(0, 5)) == 0:
            entry["enabled"] = False
        return entry

    users = draw(st.lists(st.sampled_from(USER_NAMES), unique=True, max_size=len(USER_NAMES)))
    doc["users"] = {name: principal() for name in users}
    apps = draw(st.lists(st.sampled_from(APP_NAMES), unique=True, max_size=2))
    doc["applications"] = {name: principal() for name in apps}
    groups = draw(st.lists(st.sampled_from(("g1", "g2", "g3")), unique=True, max_size=3))
    doc["groups"] = {}
    for name in groups:
        group: dict[str, Any] = {
            "members": draw(st.lists(st.sampled_from(users), unique=True)) if users else []
        }
        group["roles"] = draw(roles)
        if draw(st.booleans()):
            group["scopes"] = draw(scopes)
        doc["groups"][name] = group
    if draw(st.booleans()):
        doc["anonymous"] = {"roles": draw(roles), "scopes": draw(scopes)}
    caps: dict[str, Any] = {}
    for channel in draw(st.lists(st.sampled_from([c.value for c in Channel]), unique=True, max_size=3)):
        kind = draw(st.sampled_from(("permissions", "roles", "deny")))
        if kind == "roles":
            caps[channel] = {"roles": draw(st.lists(st.sampled_from(role_names), unique=True, max_size=2))}
        else:
            caps[channel] = {kind: draw(st.lists(st.sampled_from(PERMISSION_IDS), unique=True, max_size=6))}
    doc["constraints"] = {"channel_caps": caps}
    return doc


def requests_for(doc: dict[str, Any]) -> st.SearchStrategy[tuple[str, Permission, str, Channel]]:
    """Requests naming the document's principals, plus unknown ones and malformed resources."""
    names = [*doc.get("users", {}), *doc.get("applications", {}), "anonymous", "mallory", ""]
    return st.tuples(
        st.sampled_from(names),
        st.sampled_from(list(Permission)),
        st.sampled_from(RESOURCE_POOL),
        st.sampled_from(list(Channel)),
    )
