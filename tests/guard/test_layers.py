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
        path.name
        for path in (PACKAGE / "guard").glob("*.py")
        if any(name == "meterd.seclog" or name.startswith("meterd.seclog.") for name in _imports(path))
    )
    assert importers == ["audit.py"]
