"""``meterctl policy review --log | what-if | suggest`` as an auditor runs them: a real process."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tests.review import scenario

ROOT = Path(__file__).resolve().parents[2]


def meterctl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterd.cli.meterctl", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def test_review_json_and_table(tmp_path: Path) -> None:
    log, key, policy = scenario.make(tmp_path)
    result = meterctl("policy", "review", policy, "--log", log, "--key-file", key, "--format", "json")
    assert result.returncode == 1, result.stderr  # findings
    data = json.loads(result.stdout)
    assert data["window"]["verified"]
    assert data["window"]["mac_checked"]
    row = next(r for r in data["rows"] if (r["principal"], r["permission"]) == ("alice", "terminal_access"))
    assert (row["uses"], row["last_seq"], row["channels"]) == (2, 4, ["ssh"])
    assert data["totals"]["by_kind"]["repeated-refusal"] == 1
    table = meterctl("policy", "review", policy, "--log", log, "--format", "table")
    assert "MACs NOT checked" in table.stdout
    assert "repeated-refusal: carol was refused user_management 3 times" in table.stdout
    csv_out = meterctl("policy", "review", policy, "--log", log, "--format", "csv").stdout.splitlines()
    assert sum(line.startswith("finding,") for line in csv_out) == data["totals"]["findings"]
    # Without --log the review is the policy alone, as before.
    assert meterctl("policy", "review", policy).returncode == 0


def test_what_if_exit_codes(tmp_path: Path) -> None:
    log, _, policy = scenario.make(tmp_path)
    candidate = tmp_path / "candidate.toml"
    candidate.write_text(scenario.CANDIDATE)
    lose = meterctl("policy", "what-if", candidate, "--log", log, "--policy", policy, "--format", "json")
    assert lose.returncode == 1, lose.stderr
    data = json.loads(lose.stdout)
    assert {(s["principal"], s["permission"], s["channel"]) for s in data["losses"]} == {
        ("alice", "terminal_access", "ssh"),
        ("alice", "fs_read_only", "sftp"),
    }
    assert data["totals"]["gained"] == 3
    same = meterctl("policy", "what-if", policy, "--log", log)
    assert same.returncode == 0, same.stderr
    assert "would lose used access (0)" in same.stdout


def test_suggest_prints_a_policy_diff_and_writes_the_policy(tmp_path: Path) -> None:
    log, _, policy = scenario.make(tmp_path)
    out = tmp_path / "suggested.toml"
    result = meterctl("policy", "suggest", "--policy", policy, "--log", log, "--out", out)
    assert result.returncode == 1, result.stderr
    assert "- alice: password_self_management @ /" in result.stdout
    diff = meterctl("policy", "diff", policy, out)
    # The same lines `policy diff` prints for the written policy.
    assert set(diff.stdout.splitlines()[:-1]) <= set(result.stdout.splitlines())
    assert meterctl("policy", "validate", out).returncode == 0


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such log"),
        ("tampered", "does not verify"),
        ("wrong-key", "another meter"),
        ("other-policy", "another meter"),
        ("bad-candidate", "does not validate"),
        ("empty-window", "no records in the window"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, case: str, message: str) -> None:
    log, key, policy = scenario.make(tmp_path)
    candidate = policy
    args: list[str | Path] = []
    if case == "missing":
        log = tmp_path / "nothing"
    elif case == "tampered":
        segment = next(log.iterdir())
        segment.write_bytes(segment.read_bytes().replace(b'"pr":"carol"', b'"pr":"carl!"', 1))
    elif case == "wrong-key":
        key.write_text("00" * 32)
        args = ["--key-file", key]
    elif case == "other-policy":
        candidate = tmp_path / "other.toml"
        candidate.write_text('[users.zed]\nroles = ["viewer"]\n')
    elif case == "bad-candidate":
        candidate = tmp_path / "bad.toml"
        candidate.write_text('[users.zed]\nroles = ["viewr"]\n')
    elif case == "empty-window":
        args = ["--since", "2030-01-01"]
    result = meterctl("policy", "what-if", candidate, "--log", log, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_unverified_log_goes_on_with_a_warning(tmp_path: Path) -> None:
    log, _, policy = scenario.make(tmp_path)
    segment = next(log.iterdir())
    segment.write_bytes(segment.read_bytes().replace(b'"pr":"carol"', b'"pr":"carl!"', 1))
    result = meterctl("policy", "review", policy, "--log", log, "--allow-unverified", "--format", "json")
    assert result.returncode == 1
    assert "WARNING: the log does not verify" in result.stderr
    assert json.loads(result.stdout)["window"]["verified"] is False


def _png_distinct_rows(png: bytes) -> int:
    """How many different pixel rows the image has (1 for a blank page)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, depth, colour = 8, b"", 0, 0, 0, 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", data[:10])
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    assert depth == 8
    channels = {2: 3, 6: 4}[colour]
    raw = zlib.decompress(idat)
    stride = width * channels + 1
    # Filter bytes make identical rows encode identically after the first: compare row payloads.
    rows = {raw[i * stride + 1 : (i + 1) * stride] for i in range(height)}
    return len(rows)


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="chromium not installed (scripts/system-deps.sh)"
)
def test_html_report_renders_and_matches_json(tmp_path: Path) -> None:
    log, key, policy = scenario.make(tmp_path)
    common: list[str | Path] = ["policy", "review", policy, "--log", log, "--key-file", key]
    data = json.loads(meterctl(*common, "--format", "json").stdout)
    html = meterctl(*common, "--format", "html").stdout
    assert "http" not in html.replace("http-equiv", "")  # no network, no external asset
    page = tmp_path / "report.html"
    page.write_text(html)
    shot = tmp_path / "shot.png"
    chromium = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,1600",
    ]
    rendered = subprocess.run(
        [*chromium, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=False
    )
    assert shot.exists(), rendered.stderr[-2000:]
    assert _png_distinct_rows(shot.read_bytes()) > 20
    dom = subprocess.run(
        [*chromium, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    totals = data["totals"]
    for figure, value in (
        ("total-uses", totals["uses"]),
        ("used-grants", totals["used_grants"]),
        ("grants", totals["grants"]),
        ("findings", totals["findings"]),
        ("window-records", data["window"]["records"]),
    ):
        assert f'id="{figure}">{value}</span>' in dom, figure
    for row in data["rows"]:
        if row["uses"]:
            cell = f'data-principal="{row["principal"]}" data-permission="{row["permission"]}" data-uses="{row["uses"]}"'
            assert cell in dom
    assert dom.count("<tr>") >= len(data["findings"])


def test_suggest_csv_and_html(tmp_path: Path) -> None:
    log, _, policy = scenario.make(tmp_path)
    common: list[str | Path] = ["policy", "suggest", "--policy", policy, "--log", log]
    data = json.loads(meterctl(*common, "--format", "json").stdout)
    rows = meterctl(*common, "--format", "csv").stdout.splitlines()
    assert rows[0] == "section,subject,roles,was,used,custom"
    assert sum(r.startswith("suggestion,") for r in rows) == len(data["suggestions"])
    assert sum(r.startswith("change,") for r in rows) == len(data["diff"])
    assert 'id="suggestions-table"' in meterctl(*common, "--format", "html").stdout


def test_suggest_without_a_policy_starts_from_the_built_in_roles(tmp_path: Path) -> None:
    log, key, _ = scenario.make(tmp_path)
    out = tmp_path / "suggested.toml"
    result = meterctl("policy", "suggest", "--log", log, "--key-file", key, "--out", out, "--format", "json")
    assert result.returncode == 0, result.stderr  # nothing to compare with: no access "changes"
    data = json.loads(result.stdout)
    assert data["baseline"] == "builtin"
    # Only who the log shows using something, with exactly what they used; nobody else.
    assert {s["subject"]: s["used"] for s in data["suggestions"]} == {
        "user alice": ["fs_read_only", "terminal_access"],
        "user bob": ["time_sync"],
        "application scada": ["fs_read_only"],
        "anonymous": [],
    }
    assert sorted(data["diff"]) == [
        "+ alice: fs_read_only @ /",
        "+ alice: terminal_access @ /",
        "+ bob: time_sync @ /",
        "+ scada: fs_read_only @ /",
    ]
    assert meterctl("policy", "validate", out).returncode == 0
    table = meterctl("policy", "suggest", "--log", log)
    assert table.returncode == 0, table.stderr
    assert "no policy given (--policy)" in table.stdout
    assert "user bob: least-user-bob (new custom role); was unknown; used time_sync" in table.stdout
