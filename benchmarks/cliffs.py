"""No cliffs: decision time against the size of the scope tree and the number of users.

Used by ``bench_decisions.py``.  Each configuration is a generated policy with
``nodes`` scope nodes (feeders under ``/files/data``) and ``users`` users, each
scoped to a few feeders; requests cycle through ``resources`` distinct
resources (files below the feeders, so each is resolved to its node).  Every
figure is the median over alternating rounds of CPU time per
``CompiledPolicy.decide``, and each row is printed as a ratio to the smallest
configuration with the same number of resources in use, measured in the same run.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from meterd.policy.compile import CompiledPolicy, compile_policy
from meterd.policy.loader import load_policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Request


def policy_doc(nodes: int, users: int, seed: int = 20) -> dict[str, Any]:
    """A policy with ``nodes`` scope nodes in all (the meter's own included) and ``users`` users."""
    rng = random.Random(seed)
    base = len(load_policy({}).scopes)
    feeders = [f"/files/data/f{i}" for i in range(max(3, nodes - base))]
    roles = {"reader": {"permissions": ["fs_read_only"]}, "writer": {"permissions": ["fs_read_write"]}}
    people = {
        f"u{i}": {"roles": [rng.choice(sorted(roles))], "scopes": rng.sample(feeders, 3)}
        for i in range(users)
    }
    return {"scopes": {"paths": feeders}, "roles": roles, "users": people}


def _requests(compiled: CompiledPolicy, resources: int, rng: random.Random) -> list[Request]:
    """Requests whose outcomes mix the same way whatever the sizes: half allowed, half not granted.

    Each request is by a random user, for a file below one of that user's own feeders, with
    the permission of the user's role or the other one.
    """
    policy = compiled.policy
    users = sorted(policy.users)
    held = {
        Permission.FS_READ_ONLY: Permission.FS_READ_WRITE,
        Permission.FS_READ_WRITE: Permission.FS_READ_ONLY,
    }
    out = []
    for i in range(resources):
        user = policy.users[rng.choice(users)]
        (permission,) = policy.roles[user.roles[0]].permissions
        asked = permission if i % 2 else held[permission]
        out.append(Request(user.name, asked, f"{rng.choice(user.scopes)}/r{i}.csv", Channel.SSH))
    return out


def _cpu_ns_per_decision(compiled: CompiledPolicy, requests: list[Request], calls: int) -> float:
    decide = compiled.decide
    n = len(requests)
    started = time.process_time_ns()
    for i in range(calls):
        decide(requests[i % n])
    return (time.process_time_ns() - started) / calls


def sweep(
    configs: list[tuple[int, int]], resources: list[int], rounds: int, calls: int
) -> list[tuple[int, int, int, float, float]]:
    """Return ``(nodes, users, resources, ns, ratio to the first config)`` rows, ratios per resource count."""
    rng = random.Random(1686)
    compiled = {c: compile_policy(load_policy(policy_doc(*c))) for c in configs}
    rows = []
    for count in resources:
        work = {c: _requests(compiled[c], count, rng) for c in configs}
        for c in configs:  # one pass through every resource first: what is cached is cached
            _cpu_ns_per_decision(compiled[c], work[c], count)
        samples: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
        for r in range(rounds):
            order = configs if r % 2 == 0 else configs[::-1]
            for c in order:
                samples[c].append(_cpu_ns_per_decision(compiled[c], work[c], calls))
        floor = statistics.median(samples[configs[0]])
        for c in configs:
            ns = statistics.median(samples[c])
            rows.append((len(compiled[c].policy.scopes), c[1], count, ns, ns / floor))
    return rows


def print_sweep(quick: bool) -> float:
    """Sweep scope nodes and users, print the table; return the largest ratio."""
    nodes: tuple[int, ...] = (16, 1000, 4096, 10_000, 100_000)
    users: tuple[int, ...] = (10, 1000, 10_000)
    resources, rounds, calls = [64, 20_000], 9, 60_000
    if quick:
        nodes, users, resources, rounds, calls = (16, 5000), (10, 1000), [64, 6000], 3, 5000
    configs = [(n, 100) for n in nodes]
    worst = 0.0
    print("no cliffs: CompiledPolicy.decide against scope nodes (100 users), then users (1,000 nodes)")
    print(f"{'nodes':>8}{'users':>8}{'resources':>11}{'ns/decision':>14}{'x smallest':>12}")
    for sizes in (configs, [(1000, u) for u in users]):
        for n, u, count, ns, ratio in sweep(sizes, resources, rounds, calls):
            worst = max(worst, ratio)
            print(f"{n:>8}{u:>8}{count:>11}{ns:>14.1f}{ratio:>12.2f}")
    print(f"largest ratio to the smallest configuration: {worst:.2f} (target at most 1.2)")
    return worst
