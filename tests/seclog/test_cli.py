"""``meterctl log`` sub-commands, through a minimal parser like meterctl's."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterd.cli import log_cmd
from meterd.policy.request import Outcome
from meterd.seclog import EventType, SecurityLog, read_records
from meterd.seclog.segments import clear_append_only, list_segments

from .conftest import TEST_CONFIG, fill


@pytest.fixture(autouse=True)
def _clear_attributes(tmp_path: Path) -> Iterator[None]:
    """``log init`` sets the append-only attribute where permitted; clear it so files can be edited and removed."""
    yield
    for path in tmp_path.rglob("*"):
        clear_append_only(path)


def _editable(directory: Path) -> None:
    for path in directory.iterdir():
        clear_append_only(path)


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="meterctl")
    log_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.handler(args)
    return code


@pytest.fixture
def populated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    directory = tmp_path / "log"
    assert run("log", "init", "--dir", str(directory)) == 0
    key = capsys.readouterr().out.strip()
    with SecurityLog.open(directory, TEST_CONFIG) as log:
        fill(log, 3, principal="alice")
        fill(log, 2, principal="bob")
        log.append(EventType.DEMAND_RESET, principal="carol", outcome=Outcome.ALLOW)
    _editable(directory)
    return directory, key


def test_init_prints_the_key_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("log", "init", "--dir", str(tmp_path / "l"), "--key-out", str(tmp_path / "k")) == 0
    assert len((tmp_path / "k").read_text().strip()) == 64
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert run("log", "init", "--dir", str(tmp_path / "l")) == 2
    assert "already holds" in capsys.readouterr().err


def test_verify_ok_and_findings(populated: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    directory, key = populated
    assert run("log", "verify", "--dir", str(directory), "--key", key) == 0
    assert "intact" in capsys.readouterr().out
    segment = list_segments(directory)[0][1]
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:3] + lines[4:]))
    assert run("log", "verify", "--dir", str(directory), "--key", key) == 1
    assert capsys.readouterr().err.startswith("seq 4: missing:")
    assert run("log", "verify", "--dir", str(directory), "--key", "xyz") == 2
    assert run("log", "verify", "--dir", str(directory / "nope")) == 2


def test_verify_json_and_checkpoint(
    populated: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, key = populated
    copy = tmp_path / "copy.log"
    assert run("log", "export", "--dir", str(directory), "--out", str(copy)) == 0
    assert run("log", "verify", "--dir", str(copy), "--key", key, "--json") == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    segment = list_segments(directory)[0][1]
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:-3]))  # cut the tail, checkpoint included
    assert run("log", "verify", "--dir", str(directory), "--key", key) == 0  # invisible alone...
    capsys.readouterr()
    assert run("log", "verify", "--dir", str(directory), "--key", key, "--from-checkpoint", str(copy)) == 1
    assert ": truncated:" in capsys.readouterr().err


def test_an_export_anchors_every_record_it_holds(
    populated: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Records after the export's last checkpoint may not be cut off the live log either."""
    directory, key = populated
    copy = tmp_path / "copy.log"
    with SecurityLog.open(directory, TEST_CONFIG) as log:
        fill(log, 3, principal="dave")
        assert run("log", "export", "--dir", str(directory), "--out", str(copy)) == 0  # head: no checkpoint
        fill(log, 2, principal="erin")
    _editable(directory)
    head = read_records(copy)[-1].seq
    capsys.readouterr()
    assert run("log", "verify", "--dir", str(directory), "--key", key, "--from-checkpoint", str(copy)) == 0
    assert f"agrees with the copy up to its record {head}" in capsys.readouterr().out
    segment = list_segments(directory)[0][1]
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[: head - 1]))  # ends two records after the export's last checkpoint
    assert run("log", "verify", "--dir", str(directory), "--key", key) == 0  # invisible alone...
    capsys.readouterr()
    assert run("log", "verify", "--dir", str(directory), "--key", key, "--from-checkpoint", str(copy)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"seq {head}: truncated: the log ends at record {head - 1} ")
    assert run("log", "verify", "--dir", str(directory), "--json", "--from-checkpoint", str(copy)) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["anchored"], report["finding"]["problem"]) == (False, "truncated")


def test_show_filters_and_json(populated: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    directory, _ = populated
    capsys.readouterr()
    assert run("log", "show", "--dir", str(directory), "--principal", "bob", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["principal"] for r in rows] == ["bob", "bob"]
    assert run("log", "show", "--dir", str(directory), "--event", "demand_reset", "--outcome", "allow") == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert "carol(user)" in out[0]
    assert run("log", "show", "--dir", str(directory), "--since", "2999-01-01T00:00:00Z") == 0
    assert capsys.readouterr().out == ""
    with pytest.raises(SystemExit):
        run("log", "show", "--dir", str(directory), "--event", "nonsense")


def test_export_is_rfc5424(populated: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    directory, _ = populated
    capsys.readouterr()
    assert run("log", "export", "--dir", str(directory), "--hostname", "meter 7", "--from-seq", "3") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("<108>1 ")  # facility 13 (log audit), a deny is a warning
    head = lines[0].split(" ", 7)
    assert head[2] == "meter_7"
    assert head[3] == "meterd"
    assert head[4] == "-"
    assert head[5] == "login_failure"
    assert '[meterd@50316 seq="3" ch="ssh" out="deny"]' in lines[0]
    assert lines[0].endswith(list_segments(directory)[0][1].read_text().splitlines()[2])
    assert lines[-2].startswith("<110>1 ")
    assert " demand_reset " in lines[-2]
