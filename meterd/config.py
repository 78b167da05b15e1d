"""``meterd.toml``: the daemon's settings, validated into frozen dataclasses.

Each channel owns the parsing of its own section (``load(reader, config_dir)``
in its ``config`` module); this module reads the file and checks the
top-level keys and the daemon's own sections.

Invariant: meterd writes only below its state directory; the configuration
directory may be read-only (``/etc/meterd`` under the systemd unit).  So a
relative path has one of two bases:

* files meterd only reads (``daemon.policy``, ``daemon.policy_signing_key``,
  ``security_log.forward`` ``ca``/``cert``/``key``, ``modbus.tls``
  ``cert``/``key``/``ca``, ``serial.device``, ``directory.ldap`` ``ca`` and
  ``bind_password_file``) and ``daemon.state_dir`` itself
  are taken from the configuration file's directory;
* everything meterd creates or writes (``security_log.directory``,
  ``ssh.host_key_dir``, ``panel.socket``, ``serial.link``, and its own files:
  policy store, demo accounts, keys and PKI, the meter's state, the initial
  log key, the directory's offline cache) lies below ``state_dir``.  The security log's directory is
  resolved here; the channels keep their paths as written and resolve them
  against the state directory they are given at start
  (:class:`~meterd.channels.base.Runtime`).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterd.channels.modbus.config import ModbusConfig
from meterd.channels.modbus.config import load as load_modbus
from meterd.channels.panel.config import PanelConfig
from meterd.channels.panel.config import load as load_panel
from meterd.channels.serial.config import SerialConfig
from meterd.channels.serial.config import load as load_serial
from meterd.channels.ssh.config import SshConfig
from meterd.channels.ssh.config import load as load_ssh
from meterd.directory.settings import DirectorySettings
from meterd.directory.settings import load as load_directory
from meterd.errors import ConfigError, ConfigValidationError
from meterd.metrics.config import MetricsConfig
from meterd.metrics.config import load as load_metrics
from meterd.seclog.config import FullPolicy, LogConfig
from meterd.tomlreader import Reader

_TOP = ("daemon", "security_log", "ssh", "serial", "panel", "modbus", "metrics", "directory")
MAX_CONFIG_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ForwardSettings:
    """The off-meter copy: an RFC 5424 collector over TCP, or TLS (RFC 5425).

    Attributes:
        host: Collector address.
        port: Collector port.
        tls: Use TLS.
        ca: CA certificate that signed the collector's certificate (TLS only).
        cert: Client certificate, when the collector asks for one.
        key: The client certificate's private key.

    The three files are only read: relative paths are taken from the
    configuration file's directory.
        server_hostname: Name expected in the collector's certificate (default: host).
    """

    host: str
    port: int
    tls: bool
    ca: Path | None
    cert: Path | None
    key: Path | None
    server_hostname: str | None


@dataclass(frozen=True, slots=True)
class SecurityLogSettings:
    """Where the security log lives and how it behaves.

    Attributes:
        directory: The log directory (below the state directory unless absolute).
        config: Segment size, capacity, full policy, checkpoint interval.
        forward: The off-meter copy, or None.
    """

    directory: Path
    config: LogConfig
    forward: ForwardSettings | None = None


def _forward(reader: Reader, config_dir: Path) -> ForwardSettings | None:
    if not reader.table or reader.table.get("enabled", True) is False:
        return None
    reader.check_keys(("enabled", "host", "port", "tls", "ca", "cert", "key", "server_hostname"))
    host = reader.get("host", str, "")
    if not host:
        reader.error("host", "a collector host is required")
    tls = reader.get("tls", bool, False)

    def optional(key: str) -> Path | None:
        text = reader.get(key, str, "")
        return _path(config_dir, text) if text else None

    ca = optional("ca")
    if tls and ca is None:
        reader.error("ca", "TLS needs the CA certificate that signed the collector's certificate")
    return ForwardSettings(
        host=host,
        port=reader.bounded_int("port", 6514 if tls else 514, 1, 65535),
        tls=tls,
        ca=ca,
        cert=optional("cert"),
        key=optional("key"),
        server_hostname=reader.get("server_hostname", str, "") or None,
    )


@dataclass(frozen=True, slots=True)
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
    policy_signing_keys: tuple[Path, ...] = ()
    policy_signing_threshold: int = 1
    meter_id: str = ""
    meter_labels: tuple[str, ...] = ()
    directory: DirectorySettings | None = None


def _path(base: Path, text: str) -> Path:
    # Normalised (not resolved) so messages show var/..., not config/daemon/../../var/...
    path = Path(text)
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _security_log(reader: Reader, state_dir: Path, config_dir: Path) -> SecurityLogSettings:
    reader.check_keys(
        (
            "directory",
            "segment_bytes",
            "capacity_bytes",
            "full_policy",
            "checkpoint_interval",
            "append_timeout",
            "append_only_attr",
            "fill_warnings",
            "unauthenticated_share",
            "unauthenticated_records",
            "unauthenticated_records_total",
            "unauthenticated_interval",
            "forward",
        )
    )
    defaults = LogConfig()
    policies = {p.value: p for p in FullPolicy}
    full = reader.get("full_policy", str, defaults.full_policy.value)
    if full not in policies:
        reader.error("full_policy", f'must be one of {", ".join(sorted(policies))}, not "{full}"')
        full = defaults.full_policy.value
    try:
        config = LogConfig(
            segment_bytes=reader.bounded_int("segment_bytes", defaults.segment_bytes, 4096, 1 << 30),
            capacity_bytes=reader.bounded_int("capacity_bytes", defaults.capacity_bytes, 8192, 1 << 40),
            full_policy=policies[full],
            checkpoint_interval=reader.bounded_int(
                "checkpoint_interval", defaults.checkpoint_interval, 1, 1_000_000
            ),
            append_timeout=float(reader.bounded_int("append_timeout", int(defaults.append_timeout), 1, 600)),
            append_only_attr=reader.get("append_only_attr", bool, defaults.append_only_attr),
            fill_warnings=_fill_warnings(reader, defaults.fill_warnings),
            unauthenticated_share=reader.bounded_int(
                "unauthenticated_share", defaults.unauthenticated_share, 1, 50
            ),
            unauthenticated_records=reader.bounded_int(
                "unauthenticated_records", defaults.unauthenticated_records, 1, 100_000
            ),
            unauthenticated_records_total=reader.bounded_int(
                "unauthenticated_records_total", defaults.unauthenticated_records_total, 1, 100_000
            ),
            unauthenticated_interval=reader.seconds(
                "unauthenticated_interval", defaults.unauthenticated_interval, 1, 86_400
            ),
        )
    except ValueError as e:
        reader.error(None, str(e))
        config = defaults
    directory = _path(state_dir, reader.get("directory", str, "security-log"))
    return SecurityLogSettings(directory, config, _forward(reader.sub("forward"), config_dir))


def _fill_warnings(reader: Reader, default: tuple[int, ...]) -> tuple[int, ...]:
    levels = reader.get("fill_warnings", list, list(default))
    if not all(isinstance(level, int) and not isinstance(level, bool) for level in levels):
        reader.error(
            "fill_warnings", "must be a list of whole percentages", "for example [80, 85, 90, 95, 98]"
        )
        return default
    return tuple(levels)


def _section(top: Reader, key: str) -> Reader | None:
    """Return the reader of an enabled section, or None if it is absent or ``enabled = false``."""
    if key not in top.table:
        return None
    section = top.sub(key)
    return section if section.table.get("enabled", True) is not False else None


def load_config(data: dict[str, Any], source: Path) -> DaemonConfig:
    """Validate parsed ``meterd.toml`` data.

    Raises:
        ConfigValidationError: Listing every problem with its key path.
    """
    errors: list[ConfigError] = []
    top = Reader(data, "", str(source), errors)
    top.check_keys(_TOP)
    config_dir = source.parent
    daemon = top.sub("daemon")
    daemon.check_keys(
        (
            *("state_dir", "policy", "policy_signing_key", "demo_accounts", "shutdown_timeout"),
            *(
                "sweep_interval",
                "policy_signing_keys",
                "policy_signing_threshold",
                "meter_id",
                "meter_labels",
            ),
        )
    )
    signing_key = daemon.get("policy_signing_key", str, "")
    signing_keys = tuple(_path(config_dir, k) for k in daemon.strings("policy_signing_keys"))
    if signing_key:
        signing_keys = (_path(config_dir, signing_key), *signing_keys)
    threshold = daemon.bounded_int("policy_signing_threshold", 1, 1, max(1, len(signing_keys)))
    state_dir = _path(config_dir, daemon.get("state_dir", str, "/var/lib/meterd"))
    seclog = _security_log(top.sub("security_log"), state_dir, config_dir)

    def channel(key: str, loader: Any) -> Any:
        section = _section(top, key)
        return None if section is None else loader(section, config_dir)

    config = DaemonConfig(
        source=source,
        state_dir=state_dir,
        policy=_path(config_dir, daemon.get("policy", str, "policy.toml")),
        policy_signing_key=_path(config_dir, signing_key) if signing_key else None,
        demo_accounts=daemon.get("demo_accounts", bool, False),
        policy_signing_keys=signing_keys,
        policy_signing_threshold=threshold,
        meter_id=daemon.get("meter_id", str, ""),
        meter_labels=daemon.strings("meter_labels"),
        shutdown_timeout=float(daemon.bounded_int("shutdown_timeout", 10, 1, 300)),
        sweep_interval=float(daemon.bounded_int("sweep_interval", 5, 1, 3600)),
        security_log=seclog,
        ssh=channel("ssh", load_ssh),
        serial=channel("serial", load_serial),
        panel=channel("panel", load_panel),
        modbus=channel("modbus", load_modbus),
        metrics=channel("metrics", load_metrics),
        directory=channel("directory", load_directory),
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
