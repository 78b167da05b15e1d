"""Usage, findings, what-if and suggestion computed from a generated, verified log."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest

from benchmarks.synthlog import START
from meterd.policy.compile import compile_policy
from meterd.policy.files import read_policy_text
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel
from meterd.policy.table import Verdict
from meterd.review.findings import review
from meterd.review.source import Progress, ReadLog, ReviewInputError, check_same_meter, read_log
from meterd.review.suggest import cover, suggest_policy
from meterd.review.whatif import what_if
from meterd.seclog.keys import parse_key
from tests.review import scenario


@pytest.fixture
def read(tmp_path: Path) -> ReadLog:
    log, key_file, _ = scenario.make(tmp_path)
    return read_log(log, key=parse_key(key_file.read_text()))


def test_usage_counts_aggregates_channels_and_last_use(read: ReadLog) -> None:
    assert read.report.ok
    assert read.report.mac_checked
    result = review(read_policy_text(scenario.POLICY, "p"), read.usage)
    rows = {(r.grant.principal, r.grant.permission): r for r in result.rows}
    terminal = rows["alice", Permission.TERMINAL_ACCESS]
    assert (terminal.uses, terminal.last_seq, terminal.channels) == (2, 4, ("ssh",))
    assert rows["alice", Permission.FS_READ_ONLY].uses == 10  # one record with aggregated = 10
    assert rows["scada", Permission.FS_READ_ONLY].channels == ("modbus",)
    assert rows["alice", Permission.PASSWORD_SELF_MANAGEMENT].state == "unused"
    assert rows["carol", Permission.USER_MANAGEMENT].state == "refused"
    # The awaiting-approval record is no use: erin's request never went through.
    assert rows["erin", Permission.MASTER_RESET].uses == 0


def test_findings_with_evidence(read: ReadLog) -> None:
    result = review(read_policy_text(scenario.POLICY, "p"), read.usage)
    by_kind: dict[str, list[tuple[str, str, tuple[int, ...]]]] = {}
    for f in result.findings:
        by_kind.setdefault(f.kind, []).append((f.principal, f.subject, f.seqs))
    assert ("alice", "password_self_management", ()) in by_kind["unused-grant"]
    assert ("bob", "time_sync", ()) not in by_kind["unused-grant"]
    assert {s for _, s, _ in by_kind["unused-role"]} == {"installer", "operator"}  # carol used nothing
    assert {p for p, _, _ in by_kind["never-logged-in"]} == {"carol", "dave"}
    assert by_kind["repeated-refusal"] == [("carol", "user_management", (8, 10))]
    assert by_kind["dual-control-rejected"] == [("erin", "master_reset", (13,))]
    assert by_kind["dual-control-timed-out"] == [("erin", "master_reset", (14,))]
    assert by_kind["policy-change"] == [("bob", "push", (15,))]
    rejected = next(f for f in result.findings if f.kind == "dual-control-rejected")
    assert "by bob" in rejected.message


def test_window_limits_what_counts(tmp_path: Path) -> None:
    log, _, _ = scenario.make(tmp_path)
    read = read_log(log, since=START + timedelta(seconds=3), until=START + timedelta(seconds=7))
    assert (read.usage.first_seq, read.usage.last_seq) == (4, 7)
    assert read.usage.uses["alice", Permission.TERMINAL_ACCESS].count == 1
    with pytest.raises(ReviewInputError, match="no records in the window"):
        read_log(log, since=START + timedelta(days=30))


def test_what_if_replays_in_batch_and_finds_losses_and_gains(read: ReadLog) -> None:
    candidate = compile_policy(read_policy_text(scenario.CANDIDATE, "candidate"))
    result = what_if(read.usage, candidate)
    losses = {(s.principal, s.permission, s.channel): s for s in result.losses}
    assert set(losses) == {
        ("alice", Permission.TERMINAL_ACCESS, Channel.SSH),
        ("alice", Permission.FS_READ_ONLY, Channel.SFTP),
    }
    assert losses["alice", Permission.FS_READ_ONLY, Channel.SFTP].count == 10
    assert losses["alice", Permission.TERMINAL_ACCESS, Channel.SSH].last_seq == 4
    assert losses["alice", Permission.TERMINAL_ACCESS, Channel.SSH].why == ("not_granted",)
    assert [(g.principal, g.permission, g.count) for g in result.gains] == [
        ("carol", Permission.USER_MANAGEMENT, 3)
    ]
    apart = {(n.principal, n.rule): n.count for n in result.not_replayed}
    assert apart == {("erin", "dual_control"): 2, ("anonymous", "summarised"): 40}
    assert result.replayed == 2 + 10 + 1 + 3 + 2 + 100
    assert result.loses_used_access


def test_what_if_against_current_policy_and_same_policy(read: ReadLog) -> None:
    current = compile_policy(read_policy_text(scenario.POLICY, "current"))
    same = what_if(read.usage, current, current)
    assert not same.losses
    assert not same.gains
    assert same.baseline == "policy"
    changed = what_if(read.usage, compile_policy(read_policy_text(scenario.CANDIDATE, "c")), current)
    assert {s.principal for s in changed.losses} == {"alice"}


def test_batch_verdicts_match_single_decisions() -> None:
    compiled = compile_policy(read_policy_text(scenario.POLICY, "p"))
    requests = [
        ("alice", Permission.TERMINAL_ACCESS, "/", Channel.SSH),
        ("alice", Permission.MASTER_RESET, "/", Channel.SSH),
        ("nobody", Permission.TERMINAL_ACCESS, "/", Channel.SSH),
        ("alice", Permission.TERMINAL_ACCESS, "no/leading/slash", Channel.SSH),
        ("erin", Permission.MASTER_RESET, "/meter", Channel.PANEL),
    ]
    assert compiled.verdicts(requests) == [compiled.verdict(*r) for r in requests]
    assert compiled.verdicts(requests)[:3] == [Verdict.ALLOW, Verdict.NOT_GRANTED, Verdict.UNKNOWN_PRINCIPAL]


def test_suggest_covers_exactly_what_was_used(read: ReadLog) -> None:
    policy = read_policy_text(scenario.POLICY, "p")
    catalogue = {n: r.permissions for n, r in policy.roles.items()}
    assert cover(policy.roles["viewer"].permissions, catalogue) == ("viewer",)
    assert cover(frozenset({Permission.TIME_SYNC}), catalogue) is None
    suggested, suggestions = suggest_policy(policy, read.usage)
    by = {s.subject: s for s in suggestions}
    assert by["user alice"].custom
    assert suggested.roles[by["user alice"].roles[0]].permissions == {
        Permission.TERMINAL_ACCESS,
        Permission.FS_READ_ONLY,
    }
    assert by["user dave"].roles == ()  # used nothing in the window
    assert suggested.users["bob"].scopes == policy.users["bob"].scopes


def test_tampered_log_stops_unless_asked(tmp_path: Path) -> None:
    log, _key_file, _ = scenario.make(tmp_path)
    segment = next(log.iterdir())
    segment.write_bytes(segment.read_bytes().replace(b'"pr":"carol"', b'"pr":"carl!"', 1))
    with pytest.raises(ReviewInputError, match="does not verify"):
        read_log(log)
    read = read_log(log, go_on_unverified=True)
    assert "NOT trustworthy" in read.warning
    assert not read.report.ok


def test_wrong_key_and_another_meters_log(tmp_path: Path) -> None:
    log, _, _ = scenario.make(tmp_path)
    with pytest.raises(ReviewInputError, match="another meter"):
        read_log(log, key=bytes(32))
    other = read_policy_text('[users.zed]\nroles = ["viewer"]\n', "other")
    with pytest.raises(ReviewInputError, match="another meter"):
        check_same_meter(other, read_log(log).usage)


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_progress_only_on_a_terminal(tmp_path: Path, tty: bool) -> None:
    log, _, _ = scenario.make(tmp_path)
    stream = _Stream(tty)
    read_log(log, progress=Progress("reading", stream, every=5))
    shown = stream.getvalue()
    if tty:
        assert "reading 17 records" in shown  # the running total, drawn once at the first report
        assert shown.endswith("\r\x1b[K")  # the line is cleared at the end
    else:
        assert shown == ""
