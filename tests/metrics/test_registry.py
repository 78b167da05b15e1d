"""Each observer and setter method moves exactly its metric; instances are independent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest

from meterd.guard.observer import GuardObserver
from meterd.metrics import MeterdMetrics
from meterd.metrics.modbus import FUNCTION_NAMES, function_name
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Outcome
from meterd.seclog import EventType, LogConfig, SecurityLog
from meterd.seclog.forwarder import CollectorConfig, Forwarder


@pytest.fixture
def metrics() -> MeterdMetrics:
    return MeterdMetrics(clock=lambda: 1_700_000_000.0)


@pytest.fixture
def seclog(tmp_path: Path) -> Iterator[SecurityLog]:
    config = LogConfig(append_only_attr=False, segment_bytes=4096, capacity_bytes=64 * 4096)
    SecurityLog.init(tmp_path / "log", config)
    log = SecurityLog.open(tmp_path / "log", config)
    yield log
    log.close()


def value(metrics: MeterdMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_it_is_a_guard_observer(metrics: MeterdMetrics) -> None:
    observer: GuardObserver = metrics  # checked by mypy: the protocol is satisfied
    assert observer is metrics


def test_decisions_count_by_channel_permission_and_outcome(metrics: MeterdMetrics) -> None:
    metrics.decision(Channel.SSH, Permission.TERMINAL_ACCESS, Outcome.ALLOW)
    metrics.decision(Channel.SSH, Permission.TERMINAL_ACCESS, Outcome.ALLOW)
    metrics.decision(Channel.MODBUS, Permission.PEAK_DEMAND_RESET, Outcome.DENY)
    metrics.decision(Channel.PANEL, Permission.MASTER_RESET, Outcome.ERROR)
    labels = {"channel": "ssh", "permission": "terminal_access", "outcome": "allow"}
    assert value(metrics, "meterd_decisions_total", **labels) == 2
    labels = {"channel": "modbus", "permission": "peak_demand_reset", "outcome": "deny"}
    assert value(metrics, "meterd_decisions_total", **labels) == 1
    labels = {"channel": "panel", "permission": "master_reset", "outcome": "error"}
    assert value(metrics, "meterd_decisions_total", **labels) == 1
    labels = {"channel": "ssh", "permission": "terminal_access", "outcome": "deny"}
    assert value(metrics, "meterd_decisions_total", **labels) is None


def test_login_failures_lockouts_and_sessions(metrics: MeterdMetrics) -> None:
    for channel in Channel:  # present at zero from the start
        assert value(metrics, "meterd_login_failures_total", channel=channel.value) == 0
        assert value(metrics, "meterd_account_lockouts_total", channel=channel.value) == 0
        assert value(metrics, "meterd_sessions_active", channel=channel.value) == 0
    metrics.login_failure(Channel.SSH)
    metrics.login_failure(Channel.SSH)
    metrics.account_locked(Channel.SSH)
    metrics.sessions(Channel.SERIAL, 2)
    metrics.sessions(Channel.SERIAL, 1)
    assert value(metrics, "meterd_login_failures_total", channel="ssh") == 2
    assert value(metrics, "meterd_account_lockouts_total", channel="ssh") == 1
    assert value(metrics, "meterd_sessions_active", channel="serial") == 1


def test_policy_version_and_loads(metrics: MeterdMetrics) -> None:
    assert value(metrics, "meterd_policy_loads_total", result="ok") == 0
    assert value(metrics, "meterd_policy_loads_total", result="refused") == 0
    metrics.policy_loaded(7, ok=True)  # at start
    assert value(metrics, "meterd_policy_version") == 7
    metrics.policy_loaded(7, ok=False)  # a refused reload: the old policy stays in force
    assert value(metrics, "meterd_policy_version") == 7
    assert value(metrics, "meterd_policy_last_load_success") == 0
    metrics.policy_loaded(8, ok=True)
    assert value(metrics, "meterd_policy_version") == 8
    assert value(metrics, "meterd_policy_loads_total", result="ok") == 2
    assert value(metrics, "meterd_policy_loads_total", result="refused") == 1
    assert value(metrics, "meterd_policy_last_load_success") == 1
    assert value(metrics, "meterd_policy_last_load_timestamp_seconds") == 1_700_000_000.0


def test_modbus_functions_are_a_closed_set(metrics: MeterdMetrics) -> None:
    metrics.modbus_request(3, Outcome.ALLOW)
    metrics.modbus_request(6, Outcome.DENY)
    for code in (0, 9, 99, 0x83, 255, 40001):
        metrics.modbus_request(code, Outcome.DENY)
    assert (
        value(metrics, "meterd_modbus_requests_total", function="read_holding_registers", outcome="allow")
        == 1
    )
    assert (
        value(metrics, "meterd_modbus_requests_total", function="write_single_register", outcome="deny") == 1
    )
    assert value(metrics, "meterd_modbus_requests_total", function="other", outcome="deny") == 6
    assert function_name(16) == "write_multiple_registers"
    assert all(name.isidentifier() and not any(c.isdigit() for c in name) for name in FUNCTION_NAMES.values())


def test_security_log_is_read_at_scrape_time(metrics: MeterdMetrics, seclog: SecurityLog) -> None:
    forwarder = Forwarder(seclog.directory, CollectorConfig("127.0.0.1", 6514))
    metrics.watch_seclog(seclog, forwarder)
    assert value(metrics, "meterd_seclog_records_total") == 0
    for i in range(5):
        seclog.append(EventType.LOGIN_FAILURE, principal="alice", outcome=Outcome.DENY, detail={"attempt": i})
    assert value(metrics, "meterd_seclog_records_total") == 5
    assert value(metrics, "meterd_seclog_usage_bytes") == seclog.usage_bytes > 0
    fill = value(metrics, "meterd_seclog_fill_ratio")
    assert fill == pytest.approx(seclog.usage_bytes / (64 * 4096))
    assert value(metrics, "meterd_seclog_failed") == 0
    # Nothing was forwarded: every durable record is backlog.
    assert value(metrics, "meterd_seclog_forward_backlog_records") == seclog.head_seq


def test_the_log_can_be_handed_to_the_constructor(seclog: SecurityLog) -> None:
    metrics = MeterdMetrics(seclog=seclog)
    assert metrics.registry.get_sample_value("meterd_seclog_records_total") == 0


def test_watching_again_replaces_the_log(metrics: MeterdMetrics, seclog: SecurityLog) -> None:
    metrics.watch_seclog(seclog)
    metrics.watch_seclog(seclog)  # no duplicate-registration error
    assert value(metrics, "meterd_seclog_forward_backlog_records") is None  # not forwarded: no backlog


def test_flush_latency_histogram(metrics: MeterdMetrics) -> None:
    metrics.seclog_flushed(0.003)
    metrics.seclog_flushed(0.2)
    assert value(metrics, "meterd_seclog_flush_duration_seconds_count") == 2
    assert value(metrics, "meterd_seclog_flush_duration_seconds_bucket", le="0.005") == 1
    assert value(metrics, "meterd_seclog_flush_duration_seconds_sum") == pytest.approx(0.203)


def test_process_metrics_are_present(metrics: MeterdMetrics) -> None:
    rss = value(metrics, "process_resident_memory_bytes")
    assert rss is not None
    assert rss > 0
    assert value(metrics, "python_info", **_python_info_labels(metrics)) == 1


def _python_info_labels(metrics: MeterdMetrics) -> dict[str, str]:
    for family in metrics.registry.collect():
        if family.name == "python_info":
            return dict(family.samples[0].labels)
    pytest.fail("python_info missing")


def test_instances_are_independent_and_leave_the_global_registry_alone() -> None:
    before = {family.name for family in REGISTRY.collect()}
    first, second = MeterdMetrics(), MeterdMetrics()
    first.login_failure(Channel.PANEL)
    assert second.registry.get_sample_value("meterd_login_failures_total", {"channel": "panel"}) == 0
    assert {family.name for family in REGISTRY.collect()} == before


def test_security_log_commits_feed_the_flush_latency_histogram(tmp_path: Path) -> None:
    SecurityLog.init(tmp_path / "log")
    with SecurityLog.open(tmp_path / "log") as seclog:
        metrics = MeterdMetrics(seclog=seclog)
        seclog.on_commit(metrics.seclog_flushed)
        for _ in range(3):
            seclog.append(EventType.ALARM, principal="meterd", outcome=Outcome.ALLOW)
        commits = value(metrics, "meterd_seclog_flush_duration_seconds_count")
        spent = value(metrics, "meterd_seclog_flush_duration_seconds_sum")
    assert commits is not None
    assert commits >= 3  # appends made one after another each need their own commit
    assert spent is not None
    assert spent > 0


def test_modbus_counter_children_are_looked_up_once(
    metrics: MeterdMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, ...]] = []
    counter = metrics._modbus
    original = counter.labels

    def counting(*labels: str) -> object:
        calls.append(labels)
        return original(*labels)

    monkeypatch.setattr(counter, "labels", counting)
    for _ in range(100):
        metrics.modbus_request(3, Outcome.ALLOW)
        metrics.modbus_request(99, Outcome.DENY)
        metrics.modbus_request(98, Outcome.DENY)
    assert sorted(calls) == [("other", "deny"), ("read_holding_registers", "allow")]
    assert value(metrics, "meterd_modbus_requests_total", function="other", outcome="deny") == 200


def test_tallied_counts_appear_in_every_scrape_once(metrics: MeterdMetrics) -> None:
    for _ in range(3):
        metrics.decision(Channel.MODBUS, Permission.FS_READ_ONLY, Outcome.ALLOW)
        metrics.modbus_request(4, Outcome.ALLOW)
    first = generate_latest(metrics.registry).decode()
    assert 'meterd_modbus_requests_total{function="read_input_registers",outcome="allow"} 3.0' in first
    metrics.decision(Channel.MODBUS, Permission.FS_READ_ONLY, Outcome.ALLOW)
    labels = {"channel": "modbus", "permission": "fs_read_only", "outcome": "allow"}
    assert value(metrics, "meterd_decisions_total", **labels) == 4
    assert value(metrics, "meterd_decisions_total", **labels) == 4  # reading again adds nothing
    assert (
        value(metrics, "meterd_modbus_requests_total", function="read_input_registers", outcome="allow") == 3
    )
