"""The scope tree: the meter's resources as a tree of paths.

A scope restriction names subtrees (``/files/data``); a grant anchored at a
node covers that node and everything below it.  A restriction only ever
narrows: intersecting two sets of subtrees keeps, for each pair, the deeper
one when one contains the other, and nothing otherwise.

Invariants:
    * The root ``/`` is node 0; every other node's parent has a smaller index
      (nodes are sorted by path, and a parent path sorts before its children),
      which is what the compiled table's walk relies on to terminate.
    * Paths are absolute, normalised (no empty, ``.`` or ``..`` segment, no
      trailing slash) and every ancestor of a node is a node.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from meterd.errors import PolicyError

ROOT = "/"
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
MAX_DEPTH = 16

#: The meter's own resources; policies may add more below them or beside them.
METER_RESOURCES = (
    "/files",
    "/files/data",
    "/files/firmware",
    "/files/certs",
    "/files/security-log",
    "/meter",
    "/meter/settings",
    "/meter/comm",
    "/meter/modules",
    "/meter/clock",
    "/meter/demand",
    "/meter/firmware",
    "/meter/certificates",
    "/meter/users",
    "/modbus",
)


class ScopePathError(PolicyError, ValueError):
    """A resource path is malformed (the loader reports it with its key path).

    Also a :class:`ValueError`, as a malformed value is, so callers that catch
    that keep working.
    """


def split_path(path: str) -> list[str]:
    """Return the segments of an absolute resource path.

    Raises:
        ScopePathError: If the path is relative, has empty, ``.`` or ``..``
            segments, a bad character, or is deeper than :data:`MAX_DEPTH`.

    """
    if not path.startswith("/"):
        raise ScopePathError(f'resource path "{path}" must start with "/"')
    if path == ROOT:
        return []
    segments = path[1:].split("/")
    if len(segments) > MAX_DEPTH:
        raise ScopePathError(f'resource path "{path}" is deeper than {MAX_DEPTH} levels')
    for segment in segments:
        if not _SEGMENT.match(segment) or segment in {".", ".."}:
            raise ScopePathError(f'resource path "{path}" has a bad segment "{segment}"')
    return segments


def parent_of(path: str) -> str:
    """Return the parent path (the root's parent is the root)."""
    cut = path.rfind("/")
    return ROOT if cut <= 0 else path[:cut]


def contains(outer: str, inner: str) -> bool:
    """Return True if ``inner`` is ``outer`` or lies below it."""
    return outer in (ROOT, inner) or inner.startswith(outer + "/")


class ScopeTree:
    """An immutable tree of resource paths with stable node indices."""

    __slots__ = ("_index", "_parents", "_paths")

    def __init__(self, paths: Iterable[str] = ()) -> None:
        """Build the tree from ``paths`` plus every ancestor and the root.

        Raises:
            ScopePathError: If a path is malformed.

        """
        nodes = {ROOT}
        for path in paths:
            segments = split_path(path)
            for depth in range(1, len(segments) + 1):
                nodes.add("/" + "/".join(segments[:depth]))
        ordered = sorted(nodes)
        self._paths: tuple[str, ...] = tuple(ordered)
        self._index: dict[str, int] = {p: i for i, p in enumerate(ordered)}
        self._parents: tuple[int, ...] = tuple(
            -1 if p == ROOT else self._index[parent_of(p)] for p in ordered
        )

    @property
    def paths(self) -> tuple[str, ...]:
        """Node paths by index; index 0 is the root."""
        return self._paths

    @property
    def parents(self) -> tuple[int, ...]:
        """Parent index of each node; -1 for the root."""
        return self._parents

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScopeTree) and other._paths == self._paths

    def __hash__(self) -> int:
        return hash(self._paths)

    def __repr__(self) -> str:
        return f"ScopeTree({list(self._paths)!r})"

    def __contains__(self, path: object) -> bool:
        return path in self._index

    def __len__(self) -> int:
        return len(self._paths)

    def index(self, path: str) -> int:
        """Return the node index of a declared path.

        Raises:
            KeyError: If ``path`` is not a node.

        """
        return self._index[path]

    def resolve(self, resource: str) -> int:
        """Return the node a resource belongs to: the deepest node containing it.

        ``/files/data/2026-11.csv`` resolves to ``/files/data`` when that is a
        node.  Resources need not be nodes; a scope restriction names nodes.

        Raises:
            ScopePathError: If ``resource`` is malformed (e.g. contains ``..``).

        """
        found = self._index.get(resource)
        if found is not None:
            return found
        split_path(resource)
        path = resource
        while True:
            path = parent_of(path)
            found = self._index.get(path)
            if found is not None:
                return found

    def intersect(self, left: Iterable[str], right: Iterable[str]) -> tuple[str, ...]:
        """Return the subtrees covered by both ``left`` and ``right``, minimal and sorted."""
        out: set[str] = set()
        right = tuple(right)
        for a in left:
            for b in right:
                if contains(a, b):
                    out.add(b)
                elif contains(b, a):
                    out.add(a)
        return minimal(out)


def minimal(paths: Iterable[str]) -> tuple[str, ...]:
    """Drop every path that lies below another in the set; return them sorted."""
    ordered = sorted(set(paths))
    kept: list[str] = []
    for path in ordered:
        if not any(contains(k, path) for k in kept):
            kept.append(path)
    return tuple(kept)
