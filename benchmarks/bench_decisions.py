"""Decision speed: the native evaluator against the pure-Python reference, a C loop and pycasbin.

One run, one generated policy (17 permissions, 10 custom roles, 1,000 users
with 1-3 roles each, a scope tree four levels deep), one list of random
requests.  Prints ns/decision for each path and its ratio to the pure-C loop
over the same table (the baseline, measured in the same run).

Then the guard's cost on top of the C decision (``guards.py``) and the sweep
for cliffs: decision time from 16 to 100,000 scope nodes and from 10 to 10,000
users, as ratios to the smallest configuration (``cliffs.py``).

Run: ``python benchmarks/bench_decisions.py [--quick]``; ``--quick`` (what
``make test`` runs) uses 100 users, 2,000 requests, short timing loops and a
smaller sweep: the same paths, figures too noisy to quote.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import casbin

from benchmarks.cliffs import print_sweep
from benchmarks.cloop import run_c_loop
from benchmarks.guards import print_guard_costs
from meterd.policy.compile import compile_policy
from meterd.policy.evaluator import RequestBatch
from meterd.policy.loader import load_policy
from meterd.policy.model import Policy
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Request
from meterd.policy.scope import contains
from tests.policy.reference import reference_verdict

SEED = 1686
N_USERS = 1000
N_REQUESTS = 20_000
FEEDERS = [f"/files/data/site-{s}/feeder-{f}" for s in range(4) for f in range(4)]
UNITS = [f"/modbus/unit/{u}" for u in range(1, 9)]

CASBIN_MODEL = """
[request_definition]
r = sub, dom, act
[policy_definition]
p = sub, act
[role_definition]
g = _, _, _
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = g(r.sub, p.sub, r.dom) && r.act == p.act
"""


def generate_policy(rng: random.Random, n_users: int = N_USERS) -> dict[str, Any]:
    perms = [p.value for p in Permission]
    roles = {f"role{i}": {"permissions": rng.sample(perms, rng.randint(2, 8))} for i in range(10)}
    scopes = ["/", "/files/data", "/meter", "/modbus", *FEEDERS, *UNITS]
    users = {}
    for i in range(n_users):
        entry: dict[str, Any] = {"roles": rng.sample(sorted(roles), rng.randint(1, 3))}
        if rng.random() < 0.6:
            entry["scopes"] = rng.sample(scopes[1:], rng.randint(1, 2))
        users[f"user{i:04d}"] = entry
    users["admin"] = {"roles": ["rbacmnt"]}
    return {
        "scopes": {"paths": [*FEEDERS, *UNITS]},
        "roles": roles,
        "users": users,
        "constraints": {"channel_caps": {"panel": {"deny": ["user_management", "certificate_management"]}}},
    }


def random_requests(
    rng: random.Random, policy: Policy, n_requests: int = N_REQUESTS
) -> list[tuple[str, Permission, str, Channel]]:
    names = sorted(policy.users)
    resources = ["/", "/meter/demand", "/modbus/unit/3", *[f"{f}/2026-11.csv" for f in FEEDERS]]
    return [
        (rng.choice(names), rng.choice(list(Permission)), rng.choice(resources), rng.choice(list(Channel)))
        for _ in range(n_requests)
    ]


def per_call_ns(fn: Callable[[], int], calls_per_round: int, min_seconds: float = 0.5) -> float:
    """Best-of-rounds ns per decision, rounds repeated for at least ``min_seconds``."""
    best = float("inf")
    spent = 0.0
    while spent < min_seconds:
        started = time.perf_counter_ns()
        done = fn()
        elapsed = time.perf_counter_ns() - started
        spent += elapsed / 1e9
        best = min(best, elapsed / max(done, 1))
    assert calls_per_round
    return best


def casbin_enforcer(policy: Policy) -> casbin.Enforcer:
    model = casbin.model.Model()
    model.load_model_from_text(CASBIN_MODEL)
    enforcer = casbin.Enforcer(model)
    enforcer.add_named_domain_matching_func("g", lambda request, scope: contains(scope, request))
    for role in policy.roles.values():
        for permission in role.permissions:
            enforcer.add_policy(role.name, permission.value)
    for name, user in policy.users.items():
        for role_name in user.roles:
            for scope in user.scopes:
                enforcer.add_grouping_policy(name, role_name, scope)
    return enforcer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and short loops (a smoke run)")
    args = parser.parse_args()
    n_users, n_requests, c_rounds = (100, 2000, 5) if args.quick else (N_USERS, N_REQUESTS, 200)
    timing = 0.05 if args.quick else 0.5  # seconds of repeated rounds per figure
    rng = random.Random(SEED)
    policy = load_policy(generate_policy(rng, n_users))
    compiled = compile_policy(policy)
    requests = random_requests(rng, policy, n_requests)
    index = [
        (compiled.principal_index(p) or 0, perm.bit, policy.scopes.resolve(res), ch.index)
        for p, perm, res, ch in requests
    ]
    evaluator = compiled._evaluator  # the bench measures the raw native path too
    batch = RequestBatch(index)
    request_objects = [Request(p, perm, res, ch) for p, perm, res, ch in requests]

    def native_single() -> int:
        decide = evaluator.decide
        for p, b, n, c in index:
            decide(p, b, n, c)
        return len(index)

    def api_single() -> int:
        verdict = compiled.verdict
        for p, perm, res, ch in requests:
            verdict(p, perm, res, ch)
        return len(requests)

    def api_decide() -> int:
        decide = compiled.decide
        for r in request_objects:
            decide(r)
        return len(request_objects)

    def native_batch() -> int:
        evaluator.decide_batch(batch)
        return len(index)

    def batch_with_packing() -> int:
        evaluator.decide_batch(RequestBatch(index))
        return len(index)

    sample = requests[:2000]

    def reference() -> int:
        for p, perm, res, ch in sample:
            reference_verdict(policy, p, perm, res, ch)
        return len(sample)

    enforcer = casbin_enforcer(policy)
    casbin_sample = requests[:1000]

    def pycasbin() -> int:
        for p, perm, res, _ch in casbin_sample:
            enforcer.enforce(p, res, perm.value)
        return len(casbin_sample)

    c_loop = run_c_loop(compiled.table, index, rounds=c_rounds)
    rows = [
        ("pure C loop (baseline)", c_loop),
        ("C batch, prepared buffer", per_call_ns(native_batch, len(index), timing)),
        ("C batch, packing included", per_call_ns(batch_with_packing, len(index), timing)),
        ("C single, NativeEvaluator.decide(ints)", per_call_ns(native_single, len(index), timing)),
        ("C single, CompiledPolicy.verdict(names)", per_call_ns(api_single, len(requests), timing)),
        ("C single, CompiledPolicy.decide(Request)", per_call_ns(api_decide, len(requests), timing)),
        ("pure-Python reference evaluator", per_call_ns(reference, len(sample), timing)),
        (
            "pycasbin RBAC with domains (no channel caps)",
            per_call_ns(pycasbin, len(casbin_sample), 2 * timing),
        ),
    ]
    print(
        f"policy: {len(policy.users)} users, {len(policy.roles)} roles, {len(policy.scopes)} scope nodes, "
        f"table {len(compiled.table)} bytes; {len(requests)} random requests"
    )
    print(f"{'path':<48}{'ns/decision':>14}{'x C loop':>12}")
    for label, ns in rows:
        print(f"{label:<48}{ns:>14.1f}{ns / c_loop:>12.1f}")
    print()
    print_guard_costs(args.quick)
    print()
    print_sweep(args.quick)


if __name__ == "__main__":
    main()
