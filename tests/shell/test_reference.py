"""The README's shell command table is the one rendered from the shell's command table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from meterd.shell.commands import COMMANDS
from meterd.shell.reference import BEGIN, END, ReferenceError, embedded, main, markdown_table, updated

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def test_the_readme_holds_exactly_the_rendered_table() -> None:
    assert embedded(README.read_text(encoding="utf-8")) == markdown_table()


def test_every_command_is_a_row_with_its_permission() -> None:
    rows = markdown_table().splitlines()[2:]
    assert len(rows) == len(COMMANDS)
    for command, row in zip(COMMANDS, rows, strict=True):
        cells = row.split(" | ")
        assert cells[0] == f"| `{command.usage}`".replace("on|off", "on\\|off")
        assert cells[1] == (f"`{command.permission.value}`" if command.permission else "none")
    assert "| `firmware install FILE` | `firmware_management` | `/meter/firmware` |" in markdown_table()


def test_update_replaces_only_the_block_and_check_sees_staleness(tmp_path: Path) -> None:
    stale = f"# title\n\nbefore\n{BEGIN}\n| old | table |\n{END}\nafter\n"
    readme = tmp_path / "README.md"
    readme.write_text(stale)
    assert main(["--check", str(readme)]) == 1
    assert main(["--update", str(readme)]) == 0
    assert readme.read_text() == f"# title\n\nbefore\n{BEGIN}\n{markdown_table()}{END}\nafter\n"
    assert main(["--check", str(readme)]) == 0
    assert updated(readme.read_text()) == readme.read_text()


@pytest.mark.parametrize("text", ["no markers\n", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"])
def test_missing_or_misplaced_markers_are_bad_input(tmp_path: Path, text: str) -> None:
    with pytest.raises(ReferenceError):
        embedded(text)
    readme = tmp_path / "README.md"
    readme.write_text(text)
    assert main(["--update", str(readme)]) == 2
    assert readme.read_text() == text


def test_the_module_prints_the_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "meterd.shell.reference"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert result.stdout == markdown_table()
