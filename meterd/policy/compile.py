"""Compiling a validated policy into the native evaluator's table, and deciding with it.

:func:`compile_policy` flattens grants (from :mod:`meterd.policy.grants`) into
per-principal ``(scope node, permission mask)`` pairs, merging grants that are
anchored at the same node, and packs them with the channel caps and the scope
tree.  :class:`CompiledPolicy` maps names to indices and asks the native
evaluator; it is the permission core's only decision function.  It is pure
with respect to the policy: the stateful rules live in the guard.
"""

from __future__ import annotations

from collections.abc import Sequence

from meterd.errors import EvaluatorError
from meterd.policy.evaluator import NativeEvaluator, RequestBatch, RequestTuple, verdicts
from meterd.policy.grants import Principal, grants_of, principals
from meterd.policy.model import Policy
from meterd.policy.permissions import ALL_PERMISSIONS_MASK, Permission, mask_of
from meterd.policy.request import Channel, Decision, DenyReason, Outcome, Request
from meterd.policy.scope import ScopePathError, parent_of, split_path
from meterd.policy.table import NO_PARENT, Grant, PrincipalRow, TableSpec, Verdict, pack_table

#: Resources that are not scope nodes whose node is remembered (the oldest is forgotten first).
RESOLVE_CACHE_LIMIT = 4096

_DETAIL = {
    Verdict.UNKNOWN_PRINCIPAL: "{principal} is not a known principal",
    Verdict.DISABLED: "{principal} is disabled",
    Verdict.NOT_GRANTED: "no role of {principal} grants {permission}",
    Verdict.OUT_OF_SCOPE: "{principal} holds {permission} but not for {resource}",
    Verdict.CHANNEL_CAP: "the {channel} channel never grants {permission}",
    Verdict.BAD_REQUEST: "malformed request",
    Verdict.BAD_TABLE: "compiled policy unusable",
}


def table_spec(policy: Policy) -> tuple[TableSpec, tuple[Principal, ...]]:
    """Return the table specification of ``policy`` and its principals in index order."""
    order = principals(policy)
    rows = []
    for principal in order:
        by_node: dict[int, int] = {}
        for grant in grants_of(policy, principal.name):
            mask = mask_of(grant.permissions)
            for scope in grant.scopes:
                node = policy.scopes.index(scope)
                by_node[node] = by_node.get(node, 0) | mask
        grants = tuple(Grant(node, mask) for node, mask in sorted(by_node.items()) if mask)
        rows.append(PrincipalRow(principal.enabled, grants))
    caps = policy.constraints.channel_caps
    spec = TableSpec(
        policy_version=policy.version,
        channel_caps=tuple(mask_of(caps[c]) if c in caps else ALL_PERMISSIONS_MASK for c in Channel),
        node_parents=tuple(NO_PARENT if p < 0 else p for p in policy.scopes.parents),
        principals=tuple(rows),
    )
    return spec, order


class CompiledPolicy:
    """A policy ready to decide: its model, its checksummed table and the native evaluator.

    Raises:
        EvaluatorError: From the constructor, if the native evaluator refuses the table.

    """

    __slots__ = ("_decide", "_evaluator", "_extra", "_index", "_nodes", "policy", "table")

    def __init__(self, policy: Policy, table: bytes, order: tuple[Principal, ...]) -> None:
        self.policy = policy
        self.table = table
        self._index = {p.name: i for i, p in enumerate(order)}
        self._evaluator = NativeEvaluator(table)
        self._decide = self._evaluator.decide
        # Resource path -> node index: every scope node, never changed, and apart
        # from it the last RESOLVE_CACHE_LIMIT other resources asked about (-1 for
        # a malformed path; channels ask about the same few files over and over,
        # and resolving a path costs more than the decision).  Forgetting the
        # oldest resource one at a time keeps a miss at one walk up its path,
        # and the nodes' index untouched, whatever the tree's size.
        self._nodes: dict[str, int] = {path: i for i, path in enumerate(policy.scopes.paths)}
        self._extra: dict[str, int] = {}

    def _node(self, resource: str) -> int:
        """The node of a resource that is not itself a node (-1 if malformed), remembered.

        Called once ``self._nodes`` has missed: the walk below is ScopeTree.resolve's
        without its first lookup, so a miss looks nothing up twice in the node index
        (on a large tree each lookup that misses the CPU's caches counts).
        """
        node = self._extra.get(resource)
        if node is not None:
            return node
        try:
            split_path(resource)
        except ScopePathError:
            node = -1
        else:
            nodes, path = self._nodes, resource
            while node is None:
                path = parent_of(path)
                node = nodes.get(path)
        extra = self._extra
        if len(extra) >= RESOLVE_CACHE_LIMIT:
            del extra[next(iter(extra))]
        extra[resource] = node
        return node

    def principal_index(self, name: str) -> int | None:
        """Return the table index of a principal, or ``None`` if unknown."""
        return self._index.get(name)

    def verdict(self, principal: str, permission: Permission, resource: str, channel: Channel) -> Verdict:
        """Return the native evaluator's verdict for one request (fails closed on any error)."""
        node = self._nodes.get(resource)
        if node is None:
            node = self._node(resource)
        # Same order as the native evaluator: a malformed request is refused
        # as such before the principal is looked at.
        if node < 0:
            return Verdict.BAD_REQUEST
        index = self._index.get(principal)
        if index is None:
            return Verdict.UNKNOWN_PRINCIPAL
        return self._decide(index, permission.bit, node, channel.index)

    def verdicts(self, requests: Sequence[tuple[str, Permission, str, Channel]]) -> list[Verdict]:
        """Return the native evaluator's verdicts for many requests, decided in one batch.

        Names and resource paths are resolved here; a malformed path or an
        unknown principal is decided as in :meth:`verdict`, without the C call.

        Args:
            requests: ``(principal, permission, resource, channel)`` tuples.

        Returns:
            One verdict per request, in order.

        """
        out: list[Verdict] = [Verdict.BAD_TABLE] * len(requests)
        packed: list[RequestTuple] = []
        where: list[int] = []
        for i, (principal, permission, resource, channel) in enumerate(requests):
            node = self._nodes.get(resource)
            if node is None:
                node = self._node(resource)
            index = self._index.get(principal)
            if node < 0:
                out[i] = Verdict.BAD_REQUEST
            elif index is None:
                out[i] = Verdict.UNKNOWN_PRINCIPAL
            else:
                packed.append((index, permission.bit, node, channel.index))
                where.append(i)
        if packed:
            decided = verdicts(self._evaluator.decide_batch(RequestBatch(packed)))
            for i, verdict in zip(where, decided, strict=True):
                out[i] = verdict
        return out

    def decide(self, request: Request) -> Decision:
        """Decide a request by policy alone (no lockouts, no dual control: that is the guard's)."""
        try:
            verdict = self.verdict(request.principal, request.permission, request.resource, request.channel)
        except EvaluatorError as e:
            return Decision(request, Outcome.ERROR, DenyReason.EVALUATOR_ERROR, f"evaluator error: {e}")
        if verdict is Verdict.ALLOW:
            return Decision(request, Outcome.ALLOW)
        detail = _DETAIL[verdict].format(
            principal=request.principal,
            permission=request.permission.value,
            resource=request.resource,
            channel=request.channel.value,
        )
        return Decision(request, Outcome.DENY, verdict.deny_reason, detail)


def compile_policy(policy: Policy) -> CompiledPolicy:
    """Compile ``policy`` into a checksummed table and load it into the native evaluator.

    Raises:
        EvaluatorError: If the table cannot be built or the evaluator refuses it.

    """
    spec, order = table_spec(policy)
    return CompiledPolicy(policy, pack_table(spec), order)
