"""Each configuration section is declared once: loading, defaults and the README's key table agree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from meterd.channels.modbus.config import ModbusConfig
from meterd.channels.modbus.config import load as load_modbus
from meterd.channels.panel.config import PanelConfig
from meterd.channels.panel.config import load as load_panel
from meterd.channels.serial.config import SerialConfig
from meterd.channels.serial.config import load as load_serial
from meterd.channels.ssh.config import SshConfig
from meterd.channels.ssh.config import load as load_ssh
from meterd.config import DAEMON, SECTIONS, load_config
from meterd.config_reference import BEGIN, DECLARED, END, embedded, main, markdown_table, undeclared
from meterd.configspec import Base, Key, Section
from meterd.errors import ConfigError, ConfigValidationError
from meterd.meter.config import METER
from meterd.metrics.config import MetricsConfig
from meterd.metrics.config import load as load_metrics
from meterd.seclog.config import LogConfig
from meterd.security_log_settings import FORWARD, SECURITY_LOG
from meterd.tomlreader import Reader

ROOT = Path(__file__).resolve().parents[1]


def _table(section: Section, values: dict[str, Any]) -> dict[str, Any]:
    """A meterd.toml holding ``values`` in ``section`` (a dotted name nests)."""
    data: dict[str, Any] = {}
    table = data
    for part in section.name.split("."):
        table = table.setdefault(part, {})
    table.update(values)
    return data


def _as_written(key: Key) -> Any:
    return list(key.default) if isinstance(key.default, tuple) else key.default


def test_the_readme_holds_exactly_the_rendered_key_table() -> None:
    assert embedded((ROOT / "README.md").read_text(encoding="utf-8")) == markdown_table()
    assert main(["--check", str(ROOT / "README.md")]) == 0


def test_every_declared_key_is_a_row_and_every_section_is_declared() -> None:
    rows = markdown_table().splitlines()[2:]
    keys = [f"`[{s.name}] {k.name}`" for s in DECLARED for k in s.keys]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == keys
    assert undeclared() == ()
    # Every top-level section the loader reads is declared; nested ones sit in a declared parent.
    assert {s.name.split(".")[0] for s in DECLARED} == {"daemon", *SECTIONS}
    assert all(
        s.name.rsplit(".", 1)[-1] in parent.tables
        for s in DECLARED
        for parent in DECLARED
        if "." in s.name and parent.name == s.name.rsplit(".", 1)[0]
    )


def _required(section: Section, tmp_path: Path) -> dict[str, Any]:
    """What a section cannot load without (a directory's servers and secrets), as a meterd.toml."""
    if not section.name.startswith("directory"):
        return {}
    if section.name == "directory.radius":
        secret = tmp_path / "radius.secret"
        secret.write_text("a-shared-secret-of-24-oct")
        secret.chmod(0o600)
        radius = {"servers": ["127.0.0.1"], "secret_file": secret.name}
        return {"directory": {"backend": "radius", "radius": radius}}
    ldap = {
        "servers": ["ldaps://dc1.utility.example"],
        "ca": "ca.pem",
        "bind_dn": "CN=meterd,DC=utility,DC=example",
        "bind_password_file": "bind-password",
        "user_base": "OU=Users,DC=utility,DC=example",
    }
    return {"directory": {"ldap": ldap}}


def _merged(base: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in more.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and key in out else value
    return out


@pytest.mark.parametrize("section", [s for s in DECLARED if s is not FORWARD], ids=lambda s: s.name)
def test_every_declared_key_is_accepted_at_its_default(tmp_path: Path, section: Section) -> None:
    # Written out in full, a declared section loads exactly as if it were empty (beside the
    # keys a directory cannot do without, which have no default and are written on both sides).
    required = _required(section, tmp_path)
    written = {key.name: _as_written(key) for key in section.keys if key.default != ""}
    path = tmp_path / "meterd.toml"
    full, empty = _merged(_table(section, written), required), _merged(_table(section, {}), required)
    assert load_config(full, path) == load_config(empty, path)


def test_an_absent_file_takes_the_declared_defaults(tmp_path: Path) -> None:
    config = load_config({}, tmp_path / "meterd.toml")
    daemon = DAEMON.defaults()
    assert config.state_dir == Path(daemon["state_dir"])
    assert config.policy == tmp_path / daemon["policy"]
    assert config.shutdown_timeout == daemon["shutdown_timeout"]
    assert config.sweep_interval == daemon["sweep_interval"]
    assert config.security_log.config == LogConfig()
    assert config.security_log.directory == Path(daemon["state_dir"]) / SECURITY_LOG.defaults()["directory"]
    assert config.security_log.forward is None
    assert config.meter.kind == METER.defaults()["kind"]
    assert FORWARD.defaults()["port"] == 514


def test_paths_are_taken_from_the_base_they_declare(tmp_path: Path) -> None:
    config = load_config(
        {
            "daemon": {"state_dir": "state", "policy_signing_keys": ["keys/a.pem"]},
            "security_log": {"directory": "log"},
        },
        tmp_path / "meterd.toml",
    )
    assert config.state_dir == tmp_path / "state"
    assert config.policy_signing_keys == (tmp_path / "keys" / "a.pem",)
    assert config.security_log.directory == tmp_path / "state" / "log"
    bases = {key.name: key.base for s in DECLARED for key in s.keys if key.base is not None}
    assert bases["directory"] is Base.STATE
    assert bases["state_dir"] is bases["policy"] is bases["ca"] is Base.CONFIG


def test_an_unknown_meter_kind_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        load_config({"meter": {"kind": "simulted", "knd": 1}}, tmp_path / "meterd.toml")
    found = [e.render() for e in caught.value.errors]
    path = tmp_path / "meterd.toml"
    assert f'{path}: meter.kind: must be one of simulated, not "simulted"; did you mean "simulated"?' in found
    assert f'{path}: meter.knd: unknown key "knd"; did you mean "kind"?' in found


def test_a_declaration_is_checked_when_made() -> None:
    with pytest.raises(ValueError, match="names its base"):
        Key("where", Path, "x", "a path with no base")
    with pytest.raises(ValueError, match="bounds"):
        Key("count", int, 1, "a number with no bounds")
    with pytest.raises(ValueError, match="twice"):
        Section("s", "twice", (Key("a", bool, True, "a"), Key("a", bool, True, "a")))


def test_update_rewrites_only_the_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{BEGIN}\n| old |\n{END}\nafter\n")
    assert main(["--check", str(readme)]) == 1
    assert main(["--update", str(readme)]) == 0
    assert readme.read_text() == f"before\n{BEGIN}\n{markdown_table()}{END}\nafter\n"


@pytest.mark.parametrize(
    ("load", "settings"),
    [
        (load_ssh, SshConfig),
        (load_serial, SerialConfig),
        (load_panel, PanelConfig),
        (load_modbus, ModbusConfig),
        (load_metrics, MetricsConfig),
    ],
    ids=["ssh", "serial", "panel", "modbus", "metrics"],
)
def test_a_channel_s_declared_defaults_are_its_settings_defaults(
    tmp_path: Path, load: Callable[[Reader, Path], Any], settings: type
) -> None:
    errors: list[ConfigError] = []
    assert load(Reader({}, "section", "meterd.toml", errors), tmp_path) == settings()
    assert errors == []


def test_an_empty_security_log_directory_is_refused(tmp_path: Path) -> None:
    # It used to mean the state directory itself, where the log's segments would mix with state.
    with pytest.raises(ConfigValidationError) as caught:
        load_config({"security_log": {"directory": ""}}, tmp_path / "meterd.toml")
    assert [e.render() for e in caught.value.errors] == [
        f"{tmp_path / 'meterd.toml'}: security_log.directory: must be a non-empty path"
    ]
