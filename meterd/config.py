"""``meterd.toml``: the daemon's settings, validated into frozen dataclasses.

Each section is declared once (:mod:`meterd.configspec`) beside what it
configures: ``[daemon]`` here, ``[security_log]`` in
:mod:`meterd.seclog.settings`, ``[meter]`` in :mod:`meterd.meter.config`,
each channel's in its ``config`` module, each with the :class:`~meterd.configspec.Loader`
that builds its settings.  This module reads the file, checks
the top-level keys against the registry of sections (:data:`SECTIONS`) and
builds :class:`DaemonConfig`; a new section registers there and adds its field.

Invariant: meterd writes only below its state directory; the configuration
directory may be read-only (``/etc/meterd`` under the systemd unit).  So a
relative path has one of two bases, which each path key declares
(:class:`~meterd.configspec.Base`): files meterd only reads, and
``daemon.state_dir`` itself, are taken from the configuration file's
directory; everything meterd creates or writes lies below ``state_dir``, as
do its own files under fixed names (:mod:`meterd.statedir`).  The README's
*Paths* table is rendered from those declarations.  The security log's
directory is resolved here; the channels keep their paths as written and
resolve them against the state directory they are given at start
(:class:`~meterd.runtime.Runtime`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meterd.channels.modbus.config import LOADER as MODBUS_LOADER
from meterd.channels.modbus.config import ModbusConfig
from meterd.channels.panel.config import LOADER as PANEL_LOADER
from meterd.channels.panel.config import PanelConfig
from meterd.channels.serial.config import LOADER as SERIAL_LOADER
from meterd.channels.serial.config import SerialConfig
from meterd.channels.ssh.config import LOADER as SSH_LOADER
from meterd.channels.ssh.config import SshConfig
from meterd.configspec import Base, Key, Loader, Section
from meterd.errors import ConfigError, ConfigValidationError
from meterd.meter.config import LOADER as METER_LOADER
from meterd.meter.config import MeterSettings
from meterd.metrics.config import LOADER as METRICS_LOADER
from meterd.metrics.config import MetricsConfig
from meterd.record import record
from meterd.seclog.settings import LOADER as SECURITY_LOG_LOADER
from meterd.seclog.settings import ForwardSettings, SecurityLogSettings
from meterd.tomlreader import Reader

if TYPE_CHECKING:
    from meterd.directory.settings import DirectorySettings

__all__ = [
    "DAEMON",
    "SECTIONS",
    "DaemonConfig",
    "ForwardSettings",
    "SectionLoader",
    "SecurityLogSettings",
    "load_config",
    "read_config",
]

MAX_CONFIG_BYTES = 1024 * 1024
#: Most trusted policy-signing keys.
MAX_SIGNING_KEYS = 64

DAEMON = Section(
    "daemon",
    "the daemon itself: its state, its policy, how it stops",
    (
        Key("state_dir", Path, "/var/lib/meterd", "where meterd keeps state and writes", base=Base.CONFIG),
        Key("policy", Path, "policy.toml", "the policy file the store is seeded from", base=Base.CONFIG),
        Key("policy_signing_key", Path, "", "a trusted Ed25519 public key (PEM)", base=Base.CONFIG),
        Key("policy_signing_keys", tuple, (), "more trusted Ed25519 public keys (PEM)", base=Base.CONFIG),
        Key(
            "policy_signing_threshold",
            int,
            1,
            "how many of those keys must sign a bundle (at most their number)",
            low=1,
            high=MAX_SIGNING_KEYS,
        ),
        Key("meter_id", str, "", "this meter's id, matched against a bundle's targets"),
        Key("meter_labels", tuple, (), "this meter's labels, matched likewise"),
        Key("demo_accounts", bool, False, "random credentials for demo accounts (never in production)"),
        Key("shutdown_timeout", int, 10, "seconds a shutdown may take", low=1, high=300),
        Key("sweep_interval", int, 5, "seconds between idle-session sweeps", low=1, high=3600),
    ),
)


@record
class DaemonConfig:
    """Everything ``meterd --config`` needs.

    Attributes:
        source: The configuration file.
        state_dir: Where state lives (created 0700 if missing), and the only
            place meterd writes; relative to the configuration file's directory.
        policy: The policy file meterd seeds its policy store from and re-reads
            on reload (read only: relative to the configuration file's directory).
        policy_signing_key: The configuration tool's Ed25519 public key (PEM): one
            more entry of ``policy_signing_keys`` (read only: relative to the
            configuration file's directory).
        policy_signing_keys: Trusted Ed25519 public keys (PEM files); when any is
            set, only format 2 bundles signed by ``policy_signing_threshold`` of
            them are accepted.
        policy_signing_threshold: How many of those keys must sign (m of n).
        meter_id: This meter's id, matched against a bundle's targets.
        meter_labels: This meter's labels (a substation, a feeder), matched likewise.
        demo_accounts: Give enabled users without credentials random ones on
            first start (the embedded default only; never in production).
        shutdown_timeout: Seconds a shutdown may take before listeners are abandoned.
        sweep_interval: Seconds between idle-session sweeps and aggregate records.
        security_log: The security log's settings.
        ssh: SSH/SFTP channel, or None when disabled.
        serial: Serial console, or None.
        panel: Front panel socket, or None.
        modbus: Modbus channel, or None.
        metrics: Metrics endpoint, or None.
        meter: Which meter the daemon builds.
        directory: Directory login (LDAP/Active Directory or RADIUS), or None.
    """

    source: Path
    state_dir: Path
    policy: Path
    policy_signing_key: Path | None
    demo_accounts: bool
    shutdown_timeout: float
    sweep_interval: float
    security_log: SecurityLogSettings
    ssh: SshConfig | None
    serial: SerialConfig | None
    panel: PanelConfig | None
    modbus: ModbusConfig | None
    metrics: MetricsConfig | None
    policy_signing_keys: tuple[Path, ...] = DAEMON.default("policy_signing_keys")
    policy_signing_threshold: int = DAEMON.default("policy_signing_threshold")
    meter_id: str = DAEMON.default("meter_id")
    meter_labels: tuple[str, ...] = DAEMON.default("meter_labels")
    meter: MeterSettings = field(default_factory=MeterSettings)
    directory: DirectorySettings | None = None


#: Reads one section: its table, and the directories relative paths are taken from.
ReadSection = Callable[[Reader, Mapping[Base, Path]], Any]


@record
class SectionLoader:
    """How one top-level table of ``meterd.toml`` becomes a field of :class:`DaemonConfig`.

    Attributes:
        name: The table's name and the field's.
        read: Reads it.
        optional: An absent table, or one with ``enabled = false``, is None
            (a channel not run); otherwise an absent table takes its defaults.
    """

    name: str
    read: ReadSection
    optional: bool = True


def _channel(loader: Loader[Any]) -> SectionLoader:
    # A channel keeps the paths it writes as written: the daemon resolves those below
    # state_dir at start (the state directory it is handed then, Runtime).
    return SectionLoader(
        loader.section.name, lambda reader, bases: loader.load(reader, {Base.CONFIG: bases[Base.CONFIG]})
    )


def _read_directory(reader: Reader, bases: Mapping[Base, Path]) -> DirectorySettings:
    # [directory]'s settings (LDAP and RADIUS) load only for a meter that has the table.
    from meterd.directory.settings import LOADER  # noqa: PLC0415

    return LOADER.load(reader, {Base.CONFIG: bases[Base.CONFIG]})


#: Every top-level table but ``[daemon]``, in file order.
SECTIONS: dict[str, SectionLoader] = {
    loader.name: loader
    for loader in (
        SectionLoader("security_log", SECURITY_LOG_LOADER.load, optional=False),
        SectionLoader("meter", METER_LOADER.load, optional=False),
        _channel(SSH_LOADER),
        _channel(SERIAL_LOADER),
        _channel(PANEL_LOADER),
        _channel(MODBUS_LOADER),
        _channel(METRICS_LOADER),
        SectionLoader("directory", _read_directory),
    )
}


def _section(top: Reader, loader: SectionLoader, bases: Mapping[Base, Path]) -> Any:
    if loader.optional and (
        loader.name not in top.table or top.table[loader.name].get("enabled", True) is False
    ):
        return None
    return loader.read(top.sub(loader.name), bases)


def load_config(data: dict[str, Any], source: Path) -> DaemonConfig:
    """Validate parsed ``meterd.toml`` data.

    Raises:
        ConfigValidationError: Listing every problem with its key path.
    """
    errors: list[ConfigError] = []
    top = Reader(data, "", str(source), errors)
    top.check_keys((DAEMON.name, *SECTIONS))
    config_dir = source.parent
    daemon = top.sub(DAEMON.name)
    values = DAEMON.read(daemon, {Base.CONFIG: config_dir})
    signing_key: Path | None = values["policy_signing_key"]
    signing_keys: tuple[Path, ...] = values["policy_signing_keys"]
    if signing_key is not None:
        signing_keys = (signing_key, *signing_keys)
    threshold = values["policy_signing_threshold"]
    if threshold > max(1, len(signing_keys)):
        daemon.error(
            "policy_signing_threshold", f"must be between 1 and {max(1, len(signing_keys))}, not {threshold}"
        )
        threshold = 1
    state_dir: Path = values["state_dir"]
    bases = {Base.CONFIG: config_dir, Base.STATE: state_dir}
    sections = {name: _section(top, loader, bases) for name, loader in SECTIONS.items()}
    config = DaemonConfig(
        source=source,
        state_dir=state_dir,
        policy=values["policy"],
        policy_signing_key=signing_key,
        demo_accounts=values["demo_accounts"],
        policy_signing_keys=signing_keys,
        policy_signing_threshold=threshold,
        meter_id=values["meter_id"],
        meter_labels=values["meter_labels"],
        shutdown_timeout=float(values["shutdown_timeout"]),
        sweep_interval=float(values["sweep_interval"]),
        **sections,
    )
    if errors:
        raise ConfigValidationError(errors)
    return config


def read_config(path: Path) -> DaemonConfig:
    """Read and validate a ``meterd.toml``.

    Raises:
        ConfigError: If the file cannot be read or is invalid.
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", source=str(path)) from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"larger than {MAX_CONFIG_BYTES} bytes", source=str(path))
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"not valid TOML: {e}", source=str(path)) from e
    return load_config(data, path.resolve())
