"""Every metric meterd exports, on one registry per :class:`MeterdMetrics`.

Invariants:
    * No label value comes from a client: channels, permissions and outcomes
      are enumerations, Modbus functions map onto a fixed table (anything else
      is ``other``), policy-load results are ``ok`` or ``refused``.  So a scrape
      never shows a user name, an address or a register, and a client cannot
      grow the number of series.
    * The guard's calls (:class:`~meterd.guard.observer.GuardObserver`) are
      cheap and never raise: a decision or a Modbus request costs one
      dictionary lookup and one integer increment.  Those two counters take
      their increments from a tally that is added to them whenever the
      registry is read (a scrape, ``get_sample_value``): a scrape shows every
      increment made before it, and the poll loop does not pay for
      ``prometheus_client``'s locked increment.  All calls come from the
      event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from meterd import __version__
from meterd.directory.backend import BACKEND_NAMES, LOGIN_OUTCOMES
from meterd.metrics.modbus import FUNCTION_NAMES, OTHER
from meterd.metrics.seclog import ForwarderState, LogState, SecurityLogCollector
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Outcome

#: Group-commit latency of the security log: an fdatasync on flash takes from
#: under a millisecond to seconds; the top bucket is the default append timeout.
FLUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

LOAD_RESULTS = ("ok", "refused")


class _Cell:
    """A counter child and the increments not yet added to it."""

    __slots__ = ("child", "pending")

    def __init__(self, child: Counter) -> None:
        self.child = child
        self.pending = 0


class _Tally:
    """Increments of the busiest counters, added to them each time the registry is collected.

    Registered first, so its (empty) collection runs before the counters' own.
    """

    def __init__(self) -> None:
        self.cells: list[_Cell] = []

    def cell(self, child: Counter) -> _Cell:
        """A new cell for ``child``; add to its ``pending``."""
        cell = _Cell(child)
        self.cells.append(cell)
        return cell

    def flush(self) -> None:
        """Add the pending increments to their counters."""
        for cell in self.cells:
            pending = cell.pending
            if pending:
                cell.pending = 0
                cell.child.inc(pending)

    def describe(self) -> list[Metric]:
        """No metric of its own (and no collection when registered)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Flush; yields nothing."""
        self.flush()
        return iter(())


class MeterdMetrics:
    """The daemon's metrics and the guard's observer.

    Each instance owns its own :class:`~prometheus_client.CollectorRegistry`
    (never the process-wide default), so several can coexist, e.g. in tests.

    Args:
        seclog: The security log to report (see :meth:`watch_seclog`), if already open.
        forwarder: Its forwarder, if the log is forwarded.
        clock: Wall clock for the last-load timestamp.

    Attributes:
        registry: Serve this (see :class:`~meterd.metrics.endpoint.MetricsServer`).
    """

    def __init__(
        self,
        *,
        seclog: LogState | None = None,
        forwarder: ForwarderState | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self.registry = r = CollectorRegistry(auto_describe=True)
        self._tally = _Tally()
        r.register(self._tally)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        Info("meterd_build", "The running meterd.", registry=r).info({"version": __version__})

        self._decisions = Counter(
            "meterd_decisions",
            "Requests decided by the guard.",
            ("channel", "permission", "outcome"),
            registry=r,
        )
        #: Tally cells by (channel, permission, outcome): ``labels()`` costs more than ``inc()``.
        self._decision_cells: dict[tuple[Channel, Permission, Outcome], _Cell] = {}
        #: Tally cells of the Modbus counter by (function label, outcome).
        self._modbus_cells: dict[tuple[str, Outcome], _Cell] = {}
        self._login_failures = Counter(
            "meterd_login_failures", "Failed login attempts.", ("channel",), registry=r
        )
        self._lockouts = Counter(
            "meterd_account_lockouts",
            "Accounts locked after repeated login failures.",
            ("channel",),
            registry=r,
        )
        self._sessions = Gauge("meterd_sessions_active", "Open sessions.", ("channel",), registry=r)
        self._summarised = Counter(
            "meterd_seclog_refusals_summarised",
            "Refusals of unauthenticated parties past their budget, counted into summary records.",
            ("channel",),
            registry=r,
        )
        self._connections_refused = Counter(
            "meterd_connections_refused",
            "Connections closed as they were accepted: a channel's connection limit was reached.",
            ("channel",),
            registry=r,
        )
        self._directory_logins = Counter(
            "meterd_directory_logins",
            "Directory logins by backend and result.",
            # "result", not "outcome": outcome is allow/deny/error in every other metric.
            ("backend", "result"),
            registry=r,
        )
        self._directory_up = Gauge(
            "meterd_directory_reachable",
            "1 if the directory answered the last login, 0 if no server could be reached.",
            ("backend",),
            registry=r,
        )
        for backend in BACKEND_NAMES:
            for outcome in LOGIN_OUTCOMES:
                self._directory_logins.labels(backend, outcome)
        for channel in Channel:
            self._summarised.labels(channel.value)
            self._connections_refused.labels(channel.value)
            # Present from the start, so a rate over the first failure is not lost.
            self._login_failures.labels(channel.value)
            self._lockouts.labels(channel.value)
            self._sessions.labels(channel.value)

        self._flush = Histogram(
            "meterd_seclog_flush_duration_seconds",
            "Time to make one group commit of the security log durable.",
            buckets=FLUSH_BUCKETS,
            registry=r,
        )

        self._policy_version = Gauge(
            "meterd_policy_version",
            "Policy-store version in force (follows push, rollback, shell edits and reload).",
            registry=r,
        )
        self._policy_file_version = Gauge(
            "meterd_policy_file_version",
            "The [policy] version written in the policy in force.",
            registry=r,
        )
        self._loads = Counter(
            "meterd_policy_loads",
            "Policy loads (at start, on reload, by push) by result (ok or refused).",
            ("result",),
            registry=r,
        )
        for result in LOAD_RESULTS:
            self._loads.labels(result)
        self._last_load_ok = Gauge(
            "meterd_policy_last_load_success",
            "1 if the last policy load or reload was put in force, 0 if it was refused.",
            registry=r,
        )
        self._last_load_time = Gauge(
            "meterd_policy_last_load_timestamp_seconds",
            "When the last policy load or reload finished (Unix time).",
            registry=r,
        )

        self._modbus = Counter(
            "meterd_modbus_requests",
            "Modbus requests by function and outcome.",
            ("function", "outcome"),
            registry=r,
        )
        self._seclog: SecurityLogCollector | None = None
        if seclog is not None:
            self.watch_seclog(seclog, forwarder)

    # -- the guard's observer -------------------------------------------------

    def decision(self, channel: Channel, permission: Permission, outcome: Outcome) -> None:
        """Count one decision."""
        cell = self._decision_cells.get((channel, permission, outcome))
        if cell is None:
            cell = self.decision_tally(channel, permission, outcome)
        cell.pending += 1

    def decision_tally(self, channel: Channel, permission: Permission, outcome: Outcome) -> _Cell:
        """The tally of these decisions (one per label set): add to its ``pending``."""
        key = (channel, permission, outcome)
        cell = self._decision_cells.get(key)
        if cell is None:
            cell = self._tally.cell(self._decisions.labels(channel.value, permission.value, outcome.value))
            self._decision_cells[key] = cell
        return cell

    def login_failure(self, channel: Channel) -> None:
        """Count one failed login."""
        self._login_failures.labels(channel.value).inc()

    def account_locked(self, channel: Channel) -> None:
        """Count one lockout."""
        self._lockouts.labels(channel.value).inc()

    def sessions(self, channel: Channel, active: int) -> None:
        """Set the number of open sessions on ``channel``."""
        self._sessions.labels(channel.value).set(active)

    # -- the security log -----------------------------------------------------

    def watch_seclog(self, log: LogState, forwarder: ForwarderState | None = None) -> None:
        """Report ``log`` (appends, usage, fill ratio, failure) and its forwarder's backlog.

        The values are read at scrape time.  Calling it again replaces the
        log watched (after the daemon reopens it).

        Args:
            log: The open :class:`~meterd.seclog.SecurityLog`.
            forwarder: Its forwarder, or None when the log is not forwarded.
        """
        if self._seclog is not None:
            self.registry.unregister(self._seclog)
        self._seclog = SecurityLogCollector(log, forwarder)
        self.registry.register(self._seclog)

    def seclog_flushed(self, seconds: float) -> None:
        """Observe the duration of one sync of the security log (one group commit or several)."""
        self._flush.observe(seconds)

    # -- the policy -----------------------------------------------------------

    def policy_loaded(self, version: int, *, ok: bool) -> None:
        """Count a policy load (at start, on reload, by push) and remember its result and time.

        Args:
            version: The version in force afterwards (the previous one when refused).
            ok: The new policy was put in force; False if it was refused.
        """
        self._loads.labels("ok" if ok else "refused").inc()
        self._last_load_ok.set(1 if ok else 0)
        self._last_load_time.set(self._clock())
        self._policy_version.set(version)

    def directory_login(self, backend: str, outcome: str) -> None:
        """Count one directory login (labels outside the closed sets are not exported)."""
        if backend in BACKEND_NAMES:
            self._directory_logins.labels(backend, outcome if outcome in LOGIN_OUTCOMES else "error").inc()

    def directory_reachable(self, backend: str, reachable: bool) -> None:
        """Set whether the directory answered its last login."""
        if backend in BACKEND_NAMES:
            self._directory_up.labels(backend).set(1 if reachable else 0)

    def refusal_summarised(self, channel: Channel) -> None:
        """Count a refusal that went into a summary record."""
        self._summarised.labels(channel.value).inc()

    def connection_refused(self, channel: Channel) -> None:
        """Count a connection closed at accept."""
        self._connections_refused.labels(channel.value).inc()

    def policy_in_force(self, store_version: int, policy_version: int) -> None:
        """A policy was put in force (start, reload, push, rollback, shell edit): count it as a load."""
        self.policy_loaded(store_version, ok=True)
        self._policy_file_version.set(policy_version)

    # -- Modbus ---------------------------------------------------------------

    def modbus_request(self, function_code: int, outcome: Outcome) -> None:
        """Count one Modbus request; unknown function codes count as ``other``."""
        cell = self._modbus_cells.get((FUNCTION_NAMES.get(function_code, OTHER), outcome))
        if cell is None:
            cell = self.modbus_tally(function_code, outcome)
        cell.pending += 1

    def modbus_tally(self, function_code: int, outcome: Outcome) -> _Cell:
        """The tally of these requests (one per label set): add to its ``pending``."""
        function = FUNCTION_NAMES.get(function_code, OTHER)  # function_name(): a closed set
        key = (function, outcome)
        cell = self._modbus_cells.get(key)
        if cell is None:
            cell = self._modbus_cells[key] = self._tally.cell(self._modbus.labels(function, outcome.value))
        return cell
