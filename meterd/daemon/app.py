"""The daemon's life: start everything or nothing, run under one supervisor, stop within a bound."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from meterd.config import DaemonConfig, ForwardSettings
from meterd.daemon.demo_pki import ensure_demo_meter_certificate
from meterd.daemon.directory import build_gate
from meterd.daemon.listeners import build_listeners, check_channel_files
from meterd.daemon.notify import Notifier
from meterd.daemon.policies import PolicyManager
from meterd.daemon.policy_service import PolicyService
from meterd.errors import ConfigError, MeterdError
from meterd.fsutil import atomic_write, private_dir
from meterd.guard import Guard
from meterd.meter.factory import build_meter
from meterd.meter.interface import Meter
from meterd.metrics.endpoint import MetricsServer
from meterd.metrics.registry import MeterdMetrics
from meterd.policy.compile import CompiledPolicy
from meterd.policy.trust import MeterIdentity
from meterd.runtime import Listener, Runtime
from meterd.seclog import SecurityLog
from meterd.seclog.events import DetailValue
from meterd.statedir import INITIAL_LOG_KEY

if TYPE_CHECKING:
    from meterd.channels.modbus.server_tls import ServerTls
    from meterd.seclog.forwarder import Forwarder

log = logging.getLogger(__name__)
INITIAL_KEY_FILE = INITIAL_LOG_KEY.name
MEASUREMENT_INTERVAL = 60.0


class _StopRequestedError(MeterdError):
    """Raised inside the supervisor's task group to end it (and cancel its tasks) on a stop signal."""


class StartupError(MeterdError):
    """The daemon could not start; nothing is left listening."""


def start_forwarder(settings: ForwardSettings, seclog: SecurityLog) -> Forwarder:
    """Start the off-meter copy of the security log.

    Raises:
        ConfigError: The TLS material cannot be loaded.
    """
    context = None
    if settings.tls:
        try:
            context = ssl.create_default_context(cafile=str(settings.ca) if settings.ca else None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if settings.cert is not None:
                context.load_cert_chain(str(settings.cert), str(settings.key) if settings.key else None)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(
                f"cannot load the collector's TLS material: {e}", key_path="security_log.forward"
            ) from e
    # Only a meter that forwards its log loads the forwarder.
    from meterd.seclog.forwarder import CollectorConfig, Forwarder  # noqa: PLC0415

    collector = CollectorConfig(settings.host, settings.port, context, settings.server_hostname)
    forwarder = Forwarder(seclog.directory, collector, durable_seq=lambda: seclog.head_seq)
    forwarder.start()
    return forwarder


def open_security_log(config: DaemonConfig) -> SecurityLog:
    """Open the security log, creating it (and exporting its initial key) on first start."""
    settings = config.security_log
    directory = settings.directory
    if not directory.exists() or not any(directory.iterdir()):
        key = SecurityLog.init(directory, settings.config)
        key_file = config.state_dir / INITIAL_KEY_FILE
        atomic_write(key_file, key.hex().encode() + b"\n")
        log.warning(
            "security log created; its initial sealing key is in %s: give it to the auditor and delete it "
            "from the meter (whoever holds it can forge records)",
            key_file,
        )
    return SecurityLog.open(directory, settings.config)


class Daemon:
    """One meterd process."""

    def __init__(self, config: DaemonConfig, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self._stop = asyncio.Event()
        self._listeners: list[Listener] = []
        self._reloads: set[asyncio.Task[None]] = set()
        self._files_checked: asyncio.Task[ServerTls] | None = None

    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, stop; return the exit code."""
        config = self.config
        private_dir(config.state_dir)
        new_demo_pki = None
        if config.demo_accounts:
            # Every start, not only the first: the TLS listener loads the meter's certificate.
            new_demo_pki = await asyncio.to_thread(ensure_demo_meter_certificate, config.state_dir)
        seclog = await asyncio.to_thread(open_security_log, config)
        # The channels' files are final now: their check runs while the rest starts.  Not
        # before the log is open: the check's process holds copies of meterd's descriptors
        # from its fork to its exec, and a first start locks the new log's key file, closes
        # it and locks it again, which such a copy of the first lock refuses.
        self._files_checked = check_channel_files(config)
        try:
            return await self._run(seclog, new_demo_pki)
        finally:
            if self._files_checked is not None and not self._files_checked.done():
                self._files_checked.cancel()  # the start failed before the listener awaited it
            # Closing seals a checkpoint of the head (after a clean stop: of the "stopped"
            # record, written once the listeners are down), so the log ends on one.
            await asyncio.to_thread(seclog.close)

    async def _run(self, seclog: SecurityLog, new_demo_pki: Path | None) -> int:
        config = self.config
        policies = PolicyManager(config.policy, config.state_dir, demo_accounts=config.demo_accounts)
        policies.new_demo_pki = new_demo_pki
        compiled, version = policies.initial()
        meter = build_meter(config.meter, config.state_dir)
        forward = config.security_log.forward
        forwarder = start_forwarder(forward, seclog) if forward is not None else None
        try:
            return await self._serve(
                seclog=seclog,
                policies=policies,
                compiled=compiled,
                version=version,
                meter=meter,
                forwarder=forwarder,
            )
        finally:
            if forwarder is not None:
                await asyncio.to_thread(forwarder.stop)

    async def _serve(
        self,
        *,
        seclog: SecurityLog,
        policies: PolicyManager,
        compiled: CompiledPolicy,
        version: int,
        meter: Meter,
        forwarder: Forwarder | None,
    ) -> int:
        config = self.config
        metrics = MeterdMetrics(seclog=seclog, forwarder=forwarder) if config.metrics else None
        if metrics is not None:
            seclog.on_commit(metrics.seclog_flushed)
        gate = build_gate(config.directory, config.state_dir) if config.directory is not None else None
        guard = Guard(
            compiled,
            seclog,
            observer=metrics,
            last_demand_reset=meter.status().last_peak_reset,
            policy_version=version,
            credentials=policies.initial_credentials,
            directory=gate,
        )
        try:
            return await self._serve_with(guard, policies, metrics, version, meter)
        finally:
            if gate is not None:
                gate.close()

    async def _serve_with(
        self,
        guard: Guard,
        policies: PolicyManager,
        metrics: MeterdMetrics | None,
        version: int,
        meter: Meter,
    ) -> int:
        config = self.config
        service = PolicyService.from_settings(
            policies,
            config.policy_signing_keys,
            config.policy_signing_threshold,
            MeterIdentity(config.meter_id, frozenset(config.meter_labels)),
        )
        runtime = Runtime(guard, meter, config.state_dir, service)
        self._listeners = build_listeners(config, runtime, self._files_checked)
        if metrics is not None and config.metrics is not None:
            self._listeners.append(MetricsServer(config.metrics, metrics))
        await self._start_all()
        await guard.daemon_state({"state": "started", "policy_store_version": version})
        await policies.record_start(guard)
        if policies.new_demo_credentials is not None:
            log.warning(
                "demo accounts created; their passwords and PINs are in %s", policies.new_demo_credentials
            )
        if policies.new_demo_pki is not None:
            log.warning(
                "demo Modbus/TCP Security certificates issued in %s (CA, meter, one per application role)",
                policies.new_demo_pki,
            )
        # Handlers first: SIGHUP's default action would kill a daemon that just said READY.
        self._install_signals(guard, policies, metrics)
        self.notifier.send(READY="1", STATUS=f"serving; policy version {version}")
        log.info("meterd ready: %s", ", ".join(listener.name for listener in self._listeners))
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._housekeeping(guard, meter))
                if self.notifier.watchdog_interval is not None:
                    tasks.create_task(self._watchdog(self.notifier.watchdog_interval))
                tasks.create_task(self._until_stopped())
        except* _StopRequestedError:
            pass
        finally:
            self.notifier.send(STOPPING="1", STATUS="stopping")
        await self._stop_all()
        await guard.sweep(final=True)
        stopped: dict[str, DetailValue] = {"state": "stopped"}
        if guard.refusals_to_summarise:
            # Counts the log had no room for even as summaries (their share is full): the
            # stop record keeps their number, so no refusal leaves the log without a trace.
            stopped["refusals_not_summarised"] = guard.refusals_to_summarise
        await guard.daemon_state(stopped)
        return 0

    async def _start_all(self) -> None:
        started: list[Listener] = []
        for listener in self._listeners:
            try:
                await listener.start()
            except (MeterdError, OSError) as e:
                self._listeners = started
                await self._stop_all()
                # Named once: some messages already start with the channel's name.
                prefix = f"{listener.name}: "
                raise StartupError(str(e) if str(e).startswith(prefix) else prefix + str(e)) from e
            started.append(listener)

    async def _stop_all(self) -> None:
        async def stop(listener: Listener) -> None:
            try:
                await asyncio.wait_for(listener.stop(), self.config.shutdown_timeout)
            except TimeoutError:
                log.error(
                    "%s did not stop within %.0f s; abandoning it",
                    listener.name,
                    self.config.shutdown_timeout,
                )
            except Exception:
                log.exception("%s failed while stopping", listener.name)

        await asyncio.gather(*(stop(listener) for listener in reversed(self._listeners)))

    def _install_signals(self, guard: Guard, policies: PolicyManager, metrics: MeterdMetrics | None) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)

        def reload() -> None:
            task = loop.create_task(self._reload(guard, policies, metrics))
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload)

    async def _reload(self, guard: Guard, policies: PolicyManager, metrics: MeterdMetrics | None) -> None:
        self.notifier.send(RELOADING="1", STATUS="reloading policy")
        try:
            applied = await policies.reload(guard)
        except ConfigError as e:
            log.error("reload refused, previous policy stays in force: %s", e.render())
            self.notifier.send(READY="1", STATUS=f"reload refused: {e.message[:200]}")
            if metrics is not None:
                metrics.policy_loaded(guard.policy_version, ok=False)
            return
        log.info("reloaded: policy store version %d", applied.version)
        self.notifier.send(READY="1", STATUS=f"serving; policy version {applied.version}")

    async def _housekeeping(self, guard: Guard, meter: Meter) -> None:
        loop = asyncio.get_running_loop()
        next_measurement = loop.time() + MEASUREMENT_INTERVAL
        while True:
            await asyncio.sleep(self.config.sweep_interval)
            await guard.sweep()
            if loop.time() >= next_measurement:
                next_measurement += MEASUREMENT_INTERVAL
                with contextlib.suppress(MeterdError, OSError):
                    await asyncio.to_thread(meter.record_interval)

    async def _until_stopped(self) -> None:
        await self._stop.wait()
        raise _StopRequestedError

    async def _watchdog(self, interval: float) -> None:
        # Pinged from the event loop itself: a stuck loop stops the pings and systemd restarts us.
        while True:
            self.notifier.send(WATCHDOG="1")
            await asyncio.sleep(interval)
