"""``[directory]`` in meterd.toml: what start-up refuses, and ``meterctl policy lint --config``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from meterd.config import read_config
from meterd.daemon.directory import build_gate
from meterd.errors import ConfigError
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, directory: str) -> Path:
    config = tmp_path / "meterd.toml"
    config.write_text(f'[daemon]\nstate_dir = "state"\npolicy = "policy.toml"\n{directory}')
    return config


def ldap_section(servers: str = '["ldaps://dc1.utility.example"]', extra: str = "") -> str:
    return f"""
[directory]
{extra}
[directory.ldap]
servers = {servers}
ca = "ca.pem"
bind_dn = "CN=meterd,OU=Services,DC=utility,DC=example"
bind_password_file = "bind-password"
user_base = "OU=Users,DC=utility,DC=example"
user_filter = "(sAMAccountName={{user}})"
upn_suffix = "utility.example"
group_mode = "ad-in-chain"
group_base = "OU=Groups,DC=utility,DC=example"
"""


def test_defaults_and_paths(tmp_path: Path) -> None:
    config = read_config(write(tmp_path, ldap_section()))
    settings = config.directory
    assert settings is not None
    assert settings.ldap is not None
    assert settings.channels == {Channel.SSH, Channel.SERIAL}
    assert settings.offline_cap == {Permission.USER_MANAGEMENT, Permission.FIRMWARE_MANAGEMENT}
    assert settings.ldap.ca == tmp_path / "ca.pem"
    assert settings.ldap.upn_suffix == "utility.example"


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        (ldap_section('["ldap://dc1.utility.example"]'), "directory.ldap.servers[0]", "plain LDAP"),
        (ldap_section('["http://dc1"]'), "directory.ldap.servers[0]", "not an ldaps://"),
        (ldap_section(extra='channels = ["panel"]'), "directory.channels[0]", "local PINs"),
        (ldap_section(extra='offline_cap = ["no_such"]'), "directory.offline_cap[0]", "unknown permission"),
        (ldap_section(extra='backend = "kerberos"'), "directory.backend", "must be one of"),
        (ldap_section(extra="surprise = 1"), "directory.surprise", "unknown key"),
    ],
)
def test_start_up_refuses_with_the_key_named(tmp_path: Path, section: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_config(write(tmp_path, section))
    assert key in caught.value.render()
    assert words in caught.value.render()


def test_plain_ldap_with_start_tls_is_accepted(tmp_path: Path) -> None:
    section = ldap_section('["ldap://dc1.utility.example"]').replace(
        "[directory.ldap]", "[directory.ldap]\nstart_tls = true"
    )
    config = read_config(write(tmp_path, section))
    assert config.directory is not None


def test_a_password_file_others_may_read_stops_the_start(tmp_path: Path) -> None:
    config = read_config(write(tmp_path, ldap_section()))
    assert config.directory is not None
    (tmp_path / "bind-password").write_text("service-password\n")
    (tmp_path / "bind-password").chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        build_gate(config.directory, tmp_path / "state")
    assert "directory.ldap.bind_password_file" in caught.value.render()
    assert "chmod 600" in caught.value.render()


def lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterd.cli.meterctl", "policy", "lint", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def test_lint_with_a_directory_requires_a_break_glass_account(tmp_path: Path) -> None:
    config = write(tmp_path, ldap_section())
    gridvis = ROOT / "config" / "gridvis.toml"
    assert lint("--config", str(config), str(gridvis)).returncode == 0
    without = tmp_path / "no-break-glass.toml"
    without.write_text(gridvis.read_text().replace("break_glass = true", ""))
    assert lint(str(without)).returncode == 0  # no directory configured: nothing to require
    result = lint("--config", str(config), str(without))
    assert result.returncode == 1
    assert "no-break-glass" in result.stdout


def test_the_readme_example_is_a_valid_configuration(tmp_path: Path) -> None:
    section = (ROOT / "README.md").read_text().split("\n## Directory login\n", 1)[1].split("\n## ", 1)[0]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    config = read_config(write(tmp_path, example))
    assert config.directory is not None
    assert config.directory.ldap is not None
    assert config.directory.ldap.group_mode == "ad-in-chain"
