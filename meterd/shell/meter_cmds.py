"""Handlers of the commands that read or act on the meter.

Each runs only after the guard allowed its permission; a
:class:`~meterd.errors.MeterError` it raises is reported by the shell.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime

from meterd.errors import MeterError
from meterd.meter.files import FIRMWARE, iso_time
from meterd.meter.model import PHASES
from meterd.shell.context import Context, UsageError, key_values
from meterd.shell.terminal import EXIT_OK

MAX_UPLOAD_BYTES = 32 * 1024 * 1024


async def show_readings(ctx: Context) -> int:
    """``show readings``: the current measurements."""
    r = ctx.runtime.meter.readings()
    pairs: list[tuple[str, object]] = [("time", iso_time(r.timestamp)), ("test_mode", r.test_mode)]
    for name, phase in zip(PHASES, r.phases, strict=True):
        pairs += [
            (f"voltage_{name}_v", phase.voltage_v),
            (f"current_{name}_a", phase.current_a),
            (f"power_{name}_kw", phase.power_kw),
        ]
    pairs += [
        ("total_power_kw", r.total_power_kw),
        ("frequency_hz", r.frequency_hz),
        ("energy_import_kwh", r.energy_import_kwh),
        ("energy_export_kwh", r.energy_export_kwh),
        ("test_energy_import_kwh", r.test_energy_import_kwh),
        ("test_energy_export_kwh", r.test_energy_export_kwh),
        ("demand_kw", r.demand_kw),
        ("peak_demand_kw", r.peak_demand.kw),
        ("peak_demand_at", iso_time(r.peak_demand.at) if r.peak_demand.at is not None else None),
    ]
    await ctx.fields(pairs)
    return EXIT_OK


async def show_status(ctx: Context) -> int:
    """``show status``: identity, clock and housekeeping."""
    s = ctx.runtime.meter.status()
    await ctx.fields(
        [
            ("model", s.model),
            ("serial_number", s.serial_number),
            ("firmware_version", s.firmware_version),
            ("meter_time", iso_time(s.clock.meter_time)),
            ("test_mode", s.test_mode),
            ("started_at", iso_time(s.started_at)),
            ("restart_count", s.restart_count),
            ("last_peak_reset", iso_time(s.last_peak_reset) if s.last_peak_reset is not None else None),
            ("last_master_reset", iso_time(s.last_master_reset) if s.last_master_reset is not None else None),
            ("certificate_count", s.certificate_count),
            *_log_status(ctx),
        ]
    )
    return EXIT_OK


def _log_status(ctx: Context) -> list[tuple[str, object]]:
    log = ctx.runtime.guard.log_status()
    if log.failed:
        state = "failed: recorded actions are refused until meterd restarts"
    elif log.full:
        state = "full: recorded actions are refused until records are exported or acknowledged"
    elif log.warning_level:
        state = f"warning: over {log.warning_level}% full"
    else:
        state = "ok"
    return [
        ("security_log", state),
        ("security_log_fill_percent", log.fill_percent),
        ("security_log_full_policy", log.full_policy),
        ("security_log_unauthenticated_percent", log.unauthenticated_percent),
        ("security_log_head_seq", log.head_seq),
        ("security_log_acknowledged_to", log.acknowledged_seq),
        ("refusals_to_summarise", log.refusals_to_summarise),
    ]


async def show_settings(ctx: Context) -> int:
    """``show settings``: the DSS values and every ION module's parameters."""
    meter = ctx.runtime.meter
    pairs: list[tuple[str, object]] = list(dataclasses.asdict(meter.dss_settings()).items())
    for module, params in sorted(meter.ion_modules().items()):
        pairs += [(f"{module}.{k}", v) for k, v in dataclasses.asdict(params).items()]
    await ctx.fields(pairs)
    return EXIT_OK


async def show_comm(ctx: Context) -> int:
    """``show comm``: the communication settings."""
    await ctx.fields(dataclasses.asdict(ctx.runtime.meter.comm_settings()).items())
    return EXIT_OK


async def show_time(ctx: Context) -> int:
    """``show time``: the meter's clock and its offset from true time."""
    clock = ctx.runtime.meter.clock()
    await ctx.fields([("meter_time", iso_time(clock.meter_time)), ("offset_s", clock.offset_s)])
    return EXIT_OK


async def demand_reset(ctx: Context) -> int:
    """``demand reset``: clear the peak demand."""
    done = ctx.runtime.meter.reset_peak_demand()
    await ctx.fields([("previous_peak_kw", done.previous.kw), ("reset_at", iso_time(done.reset_at))])
    return EXIT_OK


async def test_mode(ctx: Context) -> int:
    """``test-mode on|off``."""
    word = ctx.args[0].lower()
    if word not in ("on", "off"):
        raise UsageError("expected on or off")
    ctx.runtime.meter.set_test_mode(word == "on")
    await ctx.fields([("test_mode", ctx.runtime.meter.test_mode())])
    return EXIT_OK


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise UsageError(f"expected ISO 8601 time or POSIX seconds, got {text!r}") from e
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


async def time_set(ctx: Context) -> int:
    """``time set TIME``: set the meter's clock."""
    clock = ctx.runtime.meter.set_clock(_parse_time(ctx.args[0]))
    await ctx.fields([("meter_time", iso_time(clock.meter_time)), ("offset_s", clock.offset_s)])
    return EXIT_OK


async def comm_set(ctx: Context) -> int:
    """``comm set KEY=VALUE...``."""
    settings = ctx.runtime.meter.set_comm_settings(key_values(ctx.args))
    await ctx.fields(dataclasses.asdict(settings).items())
    return EXIT_OK


async def settings_set(ctx: Context) -> int:
    """``settings set KEY=VALUE...``: change DSS values."""
    settings = ctx.runtime.meter.set_dss_settings(key_values(ctx.args))
    await ctx.fields(dataclasses.asdict(settings).items())
    return EXIT_OK


async def module_set(ctx: Context) -> int:
    """``module set MODULE KEY=VALUE...``."""
    params = ctx.runtime.meter.set_ion_module(ctx.args[0], key_values(ctx.args[1:]))
    await ctx.fields(dataclasses.asdict(params).items())
    return EXIT_OK


def _area_file(ctx: Context, folder: str, name: str) -> bytes:
    """Read ``folder/name`` of the file area: one plain name, no links followed."""
    if "/" in name or name in ("", ".", ".."):
        raise UsageError(f"give a file name in /{folder}, not a path")
    path = ctx.runtime.meter.file_area / folder / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise MeterError(f"cannot open /{folder}/{name}: {e.strerror}") from e
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise MeterError(f"/{folder}/{name} is larger than {MAX_UPLOAD_BYTES} bytes")
    return data


async def firmware_install(ctx: Context) -> int:
    """``firmware install FILE``: install an image uploaded to ``/firmware``."""
    name = ctx.args[0].removeprefix(f"/{FIRMWARE}/")
    info = ctx.runtime.meter.install_firmware(_area_file(ctx, FIRMWARE, name), name)
    await ctx.fields(
        [
            ("name", info.name),
            ("version", info.version),
            ("sha256", info.sha256),
            ("size_bytes", info.size_bytes),
        ]
    )
    return EXIT_OK


async def cert_list(ctx: Context) -> int:
    """``cert list``."""
    await ctx.table(
        ("fingerprint", "subject", "not_after"),
        [
            (c.fingerprint, c.subject, iso_time(c.not_after) if c.not_after < 253402300800 else c.not_after)
            for c in ctx.runtime.meter.certificates()
        ],
    )
    return EXIT_OK


async def cert_install(ctx: Context) -> int:
    """``cert install FILE``: install a PEM certificate uploaded to ``/certs``."""
    name = ctx.args[0].removeprefix("/certs/")
    info = ctx.runtime.meter.install_certificate(_area_file(ctx, "certs", name))
    await ctx.fields([("fingerprint", info.fingerprint), ("subject", info.subject)])
    return EXIT_OK


async def cert_remove(ctx: Context) -> int:
    """``cert remove FINGERPRINT``."""
    info = ctx.runtime.meter.remove_certificate(ctx.args[0])
    await ctx.fields([("removed", info.fingerprint), ("subject", info.subject)])
    return EXIT_OK


async def master_reset(ctx: Context) -> int:
    """``master-reset``: clear energy, demand and measurement files."""
    report = ctx.runtime.meter.master_reset()
    await ctx.fields(
        [
            ("reset_at", iso_time(report.at)),
            ("energy_import_kwh", report.energy_import_kwh),
            ("energy_export_kwh", report.energy_export_kwh),
            ("peak_demand_kw", report.peak_demand.kw),
            ("removed_files", len(report.removed_files)),
        ]
    )
    return EXIT_OK
