"""Each configuration section is declared once: loading, defaults and the README's key table agree."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from pathlib import Path
from typing import Any

import pytest

from meterd.channels.modbus.config import LOADER as MODBUS_LOADER
from meterd.channels.modbus.config import TLS_LOADER, ModbusConfig, TlsConfig
from meterd.channels.panel.config import LOADER as PANEL_LOADER
from meterd.channels.panel.config import PanelConfig
from meterd.channels.serial.config import LOADER as SERIAL_LOADER
from meterd.channels.serial.config import SerialConfig
from meterd.channels.ssh.config import LOADER as SSH_LOADER
from meterd.channels.ssh.config import SshConfig
from meterd.config import DAEMON, SECTIONS, DaemonConfig, load_config
from meterd.config_reference import (
    BEGIN,
    DECLARED,
    END,
    PATHS_BEGIN,
    PATHS_END,
    embedded,
    main,
    markdown_table,
    paths_table,
    undeclared,
)
from meterd.configspec import Base, Key, Loader, Section
from meterd.directory.radius_config import LOADER as RADIUS_LOADER
from meterd.directory.radius_config import RadiusSettings
from meterd.directory.settings import LDAP, DirectorySettings, LdapSettings
from meterd.directory.settings import LOADER as DIRECTORY_LOADER
from meterd.errors import ConfigValidationError
from meterd.mdblock import embedded as block
from meterd.meter.config import METER, MeterSettings
from meterd.metrics.config import LOADER as METRICS_LOADER
from meterd.metrics.config import MetricsConfig
from meterd.seclog.config import LogConfig
from meterd.seclog.settings import FORWARD, FORWARD_LOADER, SECURITY_LOG, ForwardSettings, SecurityLogSettings
from meterd.seclog.settings import LOADER as SECURITY_LOG_LOADER
from meterd.statedir import FIXED
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
    readme.write_text(
        f"before\n{BEGIN}\n| old |\n{END}\nbetween\n{PATHS_BEGIN}\n| old |\n{PATHS_END}\nafter\n"
    )
    assert main(["--check", str(readme)]) == 1
    assert main(["--update", str(readme)]) == 0
    assert readme.read_text() == (
        f"before\n{BEGIN}\n{markdown_table()}{END}\nbetween\n{PATHS_BEGIN}\n{paths_table()}{PATHS_END}\nafter\n"
    )
    assert main(["--check", str(readme)]) == 0


def _with_default(loader: Loader[Any], name: str, default: Any) -> Loader[Any]:
    """``loader`` with its section copied and key ``name``'s default changed."""
    keys = tuple(
        dataclasses.replace(k, default=default) if k.name == name else k for k in loader.section.keys
    )
    return dataclasses.replace(loader, section=dataclasses.replace(loader.section, keys=keys))


@pytest.mark.parametrize(
    ("loader", "name", "default", "loaded"),
    [
        (SSH_LOADER, "port", 2022, lambda s: s.port),
        (SERIAL_LOADER, "max_line", 512, lambda s: s.max_line),
        (PANEL_LOADER, "rate", 7, lambda s: s.rate),
        (MODBUS_LOADER, "max_connections_per_client", 3, lambda s: s.max_connections_per_client),
        (TLS_LOADER, "max_handshakes", 4, lambda s: s.max_handshakes),
        (METRICS_LOADER, "port", 9200, lambda s: s.port),
        (DIRECTORY_LOADER, "workers", 2, lambda s: s.workers),
        (RADIUS_LOADER, "retries", 3, lambda s: s.retries),
        (SECURITY_LOG_LOADER, "checkpoint_interval", 10, lambda s: s.config.checkpoint_interval),
        (FORWARD_LOADER, "port", 601, lambda s: s.port),
    ],
    ids=lambda v: v.section.name if isinstance(v, Loader) else "",
)
def test_a_section_s_defaults_are_written_only_in_its_declaration(
    tmp_path: Path, loader: Loader[Any], name: str, default: Any, loaded: Any
) -> None:
    # Declaring another default is all it takes to load another value: nothing else holds one.
    empty = Reader({}, loader.section.name, "meterd.toml", [])
    assert loaded(loader.load(empty, {Base.CONFIG: tmp_path})) == loader.section.default(name) != default
    changed = _with_default(loader, name, default)
    assert (
        loaded(changed.load(Reader({}, loader.section.name, "meterd.toml", []), {Base.CONFIG: tmp_path}))
        == default
    )


#: Every settings object a section builds, with the declaration its fields' defaults come from.
SETTINGS: list[tuple[type, Section]] = [
    (SshConfig, SSH_LOADER.section),
    (SerialConfig, SERIAL_LOADER.section),
    (PanelConfig, PANEL_LOADER.section),
    (ModbusConfig, MODBUS_LOADER.section),
    (TlsConfig, TLS_LOADER.section),
    (MetricsConfig, METRICS_LOADER.section),
    (MeterSettings, METER),
    (DirectorySettings, DIRECTORY_LOADER.section),
    (LdapSettings, LDAP),
    (RadiusSettings, RADIUS_LOADER.section),
    (ForwardSettings, FORWARD),
    (SecurityLogSettings, SECURITY_LOG),
    (DaemonConfig, DAEMON),
]


def _declared_default(value: ast.expr, section: str, field: str) -> bool:
    """Whether ``value`` is ``<section>.default("<field>")``."""
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute)
        and value.func.attr == "default"
        and isinstance(value.func.value, ast.Name)
        and value.func.value.id == section
        and [a.value for a in value.args if isinstance(a, ast.Constant)] == [field]
    )


@pytest.mark.parametrize(("settings", "section"), SETTINGS, ids=lambda v: getattr(v, "__name__", ""))
def test_no_settings_field_writes_a_default_of_its_own(settings: type, section: Section) -> None:
    # A field that is a key takes the declared default; one that is not (a sub-table's
    # settings) is absent (None) or that sub-table's own settings, themselves declared.
    tree = ast.parse(textwrap.dedent(inspect.getsource(settings)))
    module = inspect.getmodule(settings)
    section_name = next(name for name, value in vars(module).items() if value is section)
    keys = {key.name for key in section.keys}
    fields = [node for node in ast.walk(tree) if isinstance(node, ast.AnnAssign) and node.value is not None]
    for node in fields:
        assert isinstance(node.target, ast.Name)
        assert node.value is not None
        name, value = node.target.id, node.value
        if name in keys:
            assert _declared_default(value, section_name, name), f"{settings.__name__}.{name}"
        else:
            # field(repr=False) has no default; field(default_factory=Settings) is a sub-table's.
            nested = isinstance(value, ast.Call) and "default" not in [k.arg for k in value.keywords]
            assert nested or (isinstance(value, ast.Constant) and value.value is None), (
                f"{settings.__name__}.{name}"
            )


def test_the_readme_holds_exactly_the_rendered_paths_table() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert block(text, PATHS_BEGIN, PATHS_END) == paths_table()
    # Every path key is listed in its section's group on the row of the base it declares,
    # and every fixed name below state_dir on the last row.
    config_row, state_row, fixed_row = paths_table().splitlines()[2:]
    for section in DECLARED:
        for key in section.keys:
            if key.base is not None:
                row = config_row if key.base is Base.CONFIG else state_row
                group = row.split(f"`[{section.name}]` ", 1)[1].split(";", 1)[0]
                assert f"`{key.name}`" in group, f"[{section.name}] {key.name}"
    assert all(f"`{path.shown}`" in fixed_row for path in FIXED)


def test_an_empty_security_log_directory_is_refused(tmp_path: Path) -> None:
    # It used to mean the state directory itself, where the log's segments would mix with state.
    with pytest.raises(ConfigValidationError) as caught:
        load_config({"security_log": {"directory": ""}}, tmp_path / "meterd.toml")
    assert [e.render() for e in caught.value.errors] == [
        f"{tmp_path / 'meterd.toml'}: security_log.directory: must be a non-empty path"
    ]
