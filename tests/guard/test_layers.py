"""The guard's shape: one audit step writes records, and nothing else in the guard imports the log."""

from __future__ import annotations

import ast
from pathlib import Path

import meterd

PACKAGE = Path(meterd.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its syntax tree (TYPE_CHECKING blocks included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_only_the_audit_step_imports_the_security_log() -> None:
    importers = sorted(
        str(path.relative_to(PACKAGE / "guard"))
        for path in (PACKAGE / "guard").rglob("*.py")
        if any(name == "meterd.seclog" or name.startswith("meterd.seclog.") for name in _imports(path))
    )
    assert importers  # the walk found the audit step
    assert [name for name in importers if not name.startswith("audit/")] == []


#: What channels and the shell may not reach through the guard: they use its façade's verbs.
FORBIDDEN = frozenset({"record", "seclog", "observer", "dual_control", "sessions", "compiled"})
#: The log's writing side: channels and the shell never write records themselves.
WRITERS = frozenset({"SecurityLog", "append", "append_async", "append_decision_async"})
WRITER_MODULES = (
    "meterd.seclog.log",
    "meterd.seclog.writer",
    "meterd.seclog.waiters",
    "meterd.seclog.store",
    "meterd.seclog.syncer",
)


def _is_guard(node: ast.expr) -> bool:
    """``guard``, ``_guard``, ``x.guard`` or ``x._guard``: an expression naming the guard."""
    if isinstance(node, ast.Name):
        return node.id in {"guard", "_guard"}
    return isinstance(node, ast.Attribute) and node.attr in {"guard", "_guard"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN and _is_guard(node.value):
            found.append(f"{path.name}:{node.lineno}: guard.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("meterd.seclog"):
            names = {alias.name for alias in node.names}
            if node.module.startswith(WRITER_MODULES) or names & WRITERS:
                found.append(f"{path.name}:{node.lineno}: imports the log's writer from {node.module}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(WRITER_MODULES):
                    found.append(f"{path.name}:{node.lineno}: imports {alias.name}")
    return found


def test_channels_and_the_shell_use_only_the_guard_facade() -> None:
    paths = sorted([*(PACKAGE / "channels").rglob("*.py"), *(PACKAGE / "shell").rglob("*.py")])
    assert len(paths) > 20  # the walk found the packages
    assert [v for path in paths for v in _violations(path)] == []


def test_the_daemon_uses_only_the_guard_facade() -> None:
    """The daemon opens the log (its wiring) but writes no record and reaches into no guard state."""
    paths = sorted((PACKAGE / "daemon").rglob("*.py"))
    assert len(paths) > 5  # the walk found the package
    reaches = [v for path in paths for v in _violations(path) if "guard." in v]
    assert reaches == []


def test_the_check_sees_a_reach_through_the_guard(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from meterd.seclog import SecurityLog\n"
        "async def f(runtime, self):\n"
        "    await runtime.guard.record(1)\n"
        "    self._guard.observer.login_failure(2)\n"
        "    return guard.compiled.policy\n"
    )
    assert len(_violations(probe)) == 4


def test_the_shell_never_imports_a_channel() -> None:
    """The shell runs inside several channels; it reaches them only through :mod:`meterd.runtime`."""
    paths = sorted((PACKAGE / "shell").rglob("*.py"))
    assert len(paths) > 5  # the walk found the package
    upward = sorted(
        f"{path.name}: {name}"
        for path in paths
        for name in _imports(path)
        if name == "meterd.channels" or name.startswith("meterd.channels.")
    )
    assert upward == []


def test_the_daemon_knows_the_meter_only_through_its_interface() -> None:
    """The daemon builds the meter with meterd.meter.factory; no implementation is named there."""
    named = sorted(
        f"{path.name}: {name}"
        for path in (PACKAGE / "daemon").rglob("*.py")
        for name in _imports(path)
        if name.startswith("meterd.meter.simulation")
    )
    assert named == []
