"""Handlers of the commands that read or act on the meter, and their pre-checks.

Each handler runs only after the guard allowed its permission; a
:class:`~meterd.errors.MeterError` it raises is reported by the shell.  A
``check_*`` function is the command's pre-check (see
:class:`~meterd.shell.commands.Command`): it refuses, without changing
anything, what the handler would refuse for its arguments or its target, so
the request never reaches the guard (no dual-control wait, no record of an
allow that could only fail).  Handlers repeat the checks: the meter may have
changed while the guard decided.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from meterd.meter.checks import check_time
from meterd.meter.errors import CertificateError, FirmwareImageError
from meterd.meter.files import CERTS, FIRMWARE, iso_time
from meterd.meter.firmware import MAX_IMAGE_BYTES, check_image, check_name
from meterd.meter.model import PHASES, match_certificate
from meterd.meter.pem import MAX_PEM_BYTES, parse_pem_certificate
from meterd.meter.settings import unknown_key_error
from meterd.shell.area import read_upload, upload_name
from meterd.shell.context import Context, UsageError, key_values
from meterd.shell.terminal import EXIT_OK


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


def _on_off(word: str) -> bool:
    if word.lower() not in ("on", "off"):
        raise UsageError("expected on or off")
    return word.lower() == "on"


def check_test_mode(ctx: Context) -> None:
    """Pre-check of ``test-mode``: the word is ``on`` or ``off``."""
    _on_off(ctx.args[0])


async def test_mode(ctx: Context) -> int:
    """``test-mode on|off``."""
    ctx.runtime.meter.set_test_mode(_on_off(ctx.args[0]))
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


def check_time_set(ctx: Context) -> None:
    """Pre-check of ``time set``: a time in the meter's calendar."""
    check_time("meter_time", _parse_time(ctx.args[0]))


async def time_set(ctx: Context) -> int:
    """``time set TIME``: set the meter's clock."""
    clock = ctx.runtime.meter.set_clock(_parse_time(ctx.args[0]))
    await ctx.fields([("meter_time", iso_time(clock.meter_time)), ("offset_s", clock.offset_s)])
    return EXIT_OK


def check_key_values(ctx: Context) -> None:
    """Pre-check of ``comm set`` and ``settings set``: every word is ``key=value``.

    Whether the meter accepts each value stays the meter's to say (after the
    allow, recorded as a failed action if it refuses).
    """
    key_values(ctx.args)


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


def check_module_set(ctx: Context) -> None:
    """Pre-check of ``module set``: a known module, then ``key=value`` words."""
    modules = ctx.runtime.meter.ion_modules()
    if ctx.args[0] not in modules:
        raise unknown_key_error(ctx.args[0], sorted(modules), "ION module")
    key_values(ctx.args[1:])


async def module_set(ctx: Context) -> int:
    """``module set MODULE KEY=VALUE...``."""
    params = ctx.runtime.meter.set_ion_module(ctx.args[0], key_values(ctx.args[1:]))
    await ctx.fields(dataclasses.asdict(params).items())
    return EXIT_OK


def _firmware_upload(ctx: Context) -> tuple[str, bytes]:
    name = upload_name(FIRMWARE, ctx.args[0])
    check_name(name)
    return name, read_upload(ctx.runtime.meter, FIRMWARE, name, MAX_IMAGE_BYTES)


def check_firmware_install(ctx: Context) -> None:
    """Pre-check of ``firmware install``: an image that checks out, under a name not installed yet."""
    name, image = _firmware_upload(ctx)
    check_image(image)
    if any(i.name == name for i in ctx.runtime.meter.firmware().images):
        raise FirmwareImageError(f"a firmware image named {name!r} is already installed")


async def firmware_install(ctx: Context) -> int:
    """``firmware install FILE``: install an image uploaded to ``/firmware``."""
    name, image = _firmware_upload(ctx)
    info = ctx.runtime.meter.install_firmware(image, name)
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


def _certificate_upload(ctx: Context) -> bytes:
    return read_upload(ctx.runtime.meter, CERTS, upload_name(CERTS, ctx.args[0]), MAX_PEM_BYTES)


def check_cert_install(ctx: Context) -> None:
    """Pre-check of ``cert install``: one well-formed certificate, not installed yet."""
    parsed = parse_pem_certificate(_certificate_upload(ctx))
    if any(c.fingerprint == parsed.fingerprint for c in ctx.runtime.meter.certificates()):
        raise CertificateError(f"certificate {parsed.fingerprint} is already installed")


async def cert_install(ctx: Context) -> int:
    """``cert install FILE``: install a PEM certificate uploaded to ``/certs``."""
    info = ctx.runtime.meter.install_certificate(_certificate_upload(ctx))
    await ctx.fields([("fingerprint", info.fingerprint), ("subject", info.subject)])
    return EXIT_OK


def check_cert_remove(ctx: Context) -> None:
    """Pre-check of ``cert remove``: exactly one installed certificate matches."""
    match_certificate(ctx.runtime.meter.certificates(), ctx.args[0])


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
