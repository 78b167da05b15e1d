"""The compiled policy's resource → scope node lookup: bounded, and never a rebuild per request."""

from __future__ import annotations

import pytest

from meterd.policy import compile as compile_module
from meterd.policy.compile import RESOLVE_CACHE_LIMIT, compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.policy.scope import ScopeTree
from meterd.policy.table import Verdict

from .reference import reference_verdict

FEEDERS = 5000  # more scope nodes than the lookup keeps for resources that are not nodes


def _policy_doc(feeders: int) -> dict[str, object]:
    paths = [f"/files/data/feeder-{i}" for i in range(feeders)]
    return {
        "scopes": {"paths": paths},
        "roles": {"reader": {"permissions": ["fs_read_only"]}},
        "users": {
            "tech": {"roles": ["reader"], "scopes": paths[: feeders // 2]},
            "admin": {"roles": ["reader"]},
        },
    }


def test_resources_beyond_the_cache_never_rebuild_the_node_index(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = compile_policy(load_policy(_policy_doc(FEEDERS)))
    reads = 0
    original = ScopeTree.paths

    def counting(tree: ScopeTree) -> tuple[str, ...]:
        nonlocal reads
        reads += 1
        paths: tuple[str, ...] = original.__get__(tree)
        return paths

    monkeypatch.setattr(ScopeTree, "paths", property(counting))
    files = [f"/files/data/feeder-{i}/day-{d}.csv" for i in range(FEEDERS) for d in range(2)]
    assert len(files) > 2 * RESOLVE_CACHE_LIMIT
    for resource in files:
        compiled.verdict("tech", Permission.FS_READ_ONLY, resource, Channel.SSH)
    # Each new resource is resolved on its own (a walk up its path), never by re-reading every node.
    assert reads == 0


def test_decisions_stay_right_while_resources_are_evicted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compile_module, "RESOLVE_CACHE_LIMIT", 8)
    policy = load_policy(_policy_doc(40))
    compiled = compile_policy(policy)
    resources = [f"/files/data/feeder-{i}/x.csv" for i in range(40)] + ["/files/data", "/", "/files/../x"]
    for _ in range(3):
        for resource in resources:
            for user in ("tech", "admin"):
                got = compiled.verdict(user, Permission.FS_READ_ONLY, resource, Channel.SSH)
                want = reference_verdict(policy, user, Permission.FS_READ_ONLY, resource, Channel.SSH)
                assert got is want, (user, resource)
    assert compiled.verdict("tech", Permission.FS_READ_ONLY, "/files/data/feeder-1/x.csv", Channel.SSH) is (
        Verdict.ALLOW
    )
