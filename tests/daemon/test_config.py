"""meterd.toml: every section validated with key paths; the shipped embedded default loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterd.config import load_config, read_config
from meterd.errors import ConfigValidationError

ROOT = Path(__file__).resolve().parents[2]


def errors_of(data: dict[str, object], tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigValidationError) as caught:
        load_config(data, tmp_path / "meterd.toml")
    return [e.render() for e in caught.value.errors]


def test_embedded_default_loads_and_listens_on_loopback_only() -> None:
    config = read_config(ROOT / "config" / "daemon" / "meterd.toml")
    assert config.state_dir.resolve() == (ROOT / "var").resolve()
    assert config.policy.resolve() == (ROOT / "config" / "policy.toml").resolve()
    assert config.demo_accounts
    assert config.ssh is not None
    assert config.ssh.listen == "127.0.0.1"
    assert config.ssh.host_key_path(config.state_dir).resolve() == (ROOT / "var" / "ssh").resolve()
    assert config.metrics is not None
    assert config.metrics.listen == "127.0.0.1"
    assert config.modbus is not None
    assert config.modbus.listen == "127.0.0.1"
    tls = config.modbus.tls
    assert tls.enabled
    assert tls.port == 8020
    # The demo PKI the first start makes in the state directory (meterd.daemon.demo_pki).
    demo_pki = (ROOT / "var" / "demo-pki").resolve()
    paths = {name: getattr(tls, name) for name in ("cert", "key", "ca")}
    assert {name: Path(p).resolve() for name, p in paths.items()} == {
        "cert": demo_pki / "meter.pem",
        "key": demo_pki / "meter-key.pem",
        "ca": demo_pki / "ca.pem",
    }


def test_unknown_keys_with_suggestions(tmp_path: Path) -> None:
    found = errors_of({"deamon": {}, "daemon": {"state_dri": "x"}}, tmp_path)
    path = tmp_path / "meterd.toml"
    assert f'{path}: deamon: unknown key "deamon"; did you mean "daemon"?' in found
    assert f'{path}: daemon.state_dri: unknown key "state_dri"; did you mean "state_dir"?' in found


def test_forwarder_settings(tmp_path: Path) -> None:
    found = errors_of({"security_log": {"forward": {"tls": True, "prot": 1}}}, tmp_path)
    assert any("security_log.forward.host: a collector host is required" in f for f in found)
    assert any("security_log.forward.ca: TLS needs the CA certificate" in f for f in found)
    assert any('security_log.forward.prot: unknown key "prot"; did you mean "port"?' in f for f in found)
    config = load_config(
        {"security_log": {"forward": {"host": "127.0.0.1", "tls": True, "ca": "ca.pem"}}},
        tmp_path / "meterd.toml",
    )
    forward = config.security_log.forward
    assert forward is not None
    assert forward.port == 6514
    assert forward.ca == tmp_path / "ca.pem"


def test_disabled_sections_are_none(tmp_path: Path) -> None:
    config = load_config({"ssh": {"enabled": False}, "modbus": {"enabled": False}}, tmp_path / "meterd.toml")
    assert config.ssh is None
    assert config.modbus is None
    assert config.serial is None


def test_bad_security_log_values(tmp_path: Path) -> None:
    found = errors_of({"security_log": {"full_policy": "delete_everything", "segment_bytes": 10}}, tmp_path)
    assert any(
        "security_log.full_policy: must be one of drop_exported, drop_oldest, refuse" in f for f in found
    )
    assert any("security_log.segment_bytes: must be between 4096" in f for f in found)


def test_written_paths_lie_below_the_state_dir_read_paths_beside_the_config(tmp_path: Path) -> None:
    etc, state = tmp_path / "etc", tmp_path / "state"
    config = load_config(
        {
            "daemon": {"state_dir": "../state", "policy": "policy.toml", "policy_signing_key": "cae.pub.pem"},
            "security_log": {
                "directory": "log",
                "forward": {
                    "host": "127.0.0.1",
                    "tls": True,
                    "ca": "ca.pem",
                    "cert": "c.pem",
                    "key": "c.key",
                },
            },
            "ssh": {"host_key_dir": "keys"},
            "panel": {"socket": "panel.sock"},
            "serial": {"device": "ttyX", "link": "console"},
            "modbus": {"tls": {"enabled": True, "cert": "m.pem", "key": "m.key", "ca": "clients.pem"}},
        },
        etc / "meterd.toml",
    )
    assert config.state_dir == state
    assert config.ssh is not None
    assert config.panel is not None
    assert config.serial is not None
    assert config.modbus is not None
    forward, tls = config.security_log.forward, config.modbus.tls
    assert forward is not None
    written = {
        "security_log.directory": config.security_log.directory,
        "ssh.host_key_dir": config.ssh.host_key_path(state),
        "panel.socket": config.panel.socket_path(state),
        "serial.link": config.serial.link_path(state),
    }
    read = {
        "daemon.policy": config.policy,
        "daemon.policy_signing_key": config.policy_signing_key,
        "security_log.forward.ca": forward.ca,
        "security_log.forward.cert": forward.cert,
        "security_log.forward.key": forward.key,
        "serial.device": Path(config.serial.device),
        "modbus.tls.cert": tls.cert,
        "modbus.tls.key": tls.key,
        "modbus.tls.ca": tls.ca,
    }
    assert {k: p.parent for k, p in written.items()} == dict.fromkeys(written, state)
    assert {k: p.parent if p else None for k, p in read.items()} == dict.fromkeys(read, etc)


def test_meter_identity_and_signing_keys(tmp_path: Path) -> None:
    config = load_config(
        {
            "daemon": {
                "meter_id": "m-0042",
                "meter_labels": ["substation-7", "feeder-3"],
                "policy_signing_key": "a.pub.pem",
                "policy_signing_keys": ["b.pub.pem", "/etc/keys/c.pub.pem"],
                "policy_signing_threshold": 2,
            }
        },
        tmp_path / "meterd.toml",
    )
    assert config.meter_id == "m-0042"
    assert config.meter_labels == ("substation-7", "feeder-3")
    assert config.policy_signing_keys == (
        tmp_path / "a.pub.pem",
        tmp_path / "b.pub.pem",
        Path("/etc/keys/c.pub.pem"),
    )
    assert config.policy_signing_threshold == 2
    found = errors_of(
        {
            "daemon": {
                "policy_signing_keys": ["a.pub.pem"],
                "policy_signing_threshold": 2,
                "meter_lables": ["x"],
            }
        },
        tmp_path,
    )
    assert any("daemon.policy_signing_threshold: must be between 1 and 1, not 2" in f for f in found)
    assert any(
        'daemon.meter_lables: unknown key "meter_lables"; did you mean "meter_labels"?' in f for f in found
    )
