"""``[directory.radius]``: every problem reported with its key path; the secret file only its owner reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from meterd.directory.radius import RadiusServer, radius_settings
from meterd.errors import ConfigValidationError

SECRET = b"a-shared-secret-of-24-oct"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "radius.secret"
    path.write_bytes(SECRET + b"\n")
    path.chmod(0o600)
    return path


def errors(table: dict[str, Any], config_dir: Path) -> list[str]:
    with pytest.raises(ConfigValidationError) as caught:
        radius_settings(table, config_dir, "meterd.toml")
    return [e.render() for e in caught.value.errors]


def test_a_full_table(secret_file: Path) -> None:
    settings = radius_settings(
        {
            "servers": ["127.0.0.1:1812", "[::1]:11812"],
            "secret_file": secret_file.name,
            "timeout": 1.5,
            "retries": 2,
            "nas_identifier": "meter-17",
            "vendor_id": 99,
            "role_attribute": 5,
            "scope_attribute": 6,
            "group_attribute": "Filter-Id",
        },
        secret_file.parent,
    )
    assert settings.servers == (RadiusServer("127.0.0.1", 1812), RadiusServer("::1", 11812))
    assert [s.uri for s in settings.servers] == ["radius://127.0.0.1:1812", "radius://[::1]:11812"]
    assert settings.secret == SECRET  # the trailing newline is not part of it
    assert settings.secret_file == secret_file
    assert (settings.timeout, settings.retries, settings.nas_identifier) == (1.5, 2, "meter-17")
    assert (settings.vendor_id, settings.role_attribute, settings.scope_attribute) == (99, 5, 6)
    assert settings.group_attribute == "filter-id"
    assert SECRET.decode() not in repr(settings)


def test_defaults(secret_file: Path) -> None:
    settings = radius_settings({"servers": ["192.0.2.1"], "secret_file": str(secret_file)}, Path("/"))
    assert settings.servers == (RadiusServer("192.0.2.1", 1812),)
    assert (settings.timeout, settings.retries, settings.group_attribute) == (2.0, 1, "class")
    assert (settings.vendor_id, settings.role_attribute, settings.scope_attribute) == (50316, 1, 2)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"servers": []}, "meterd.toml: directory.radius.servers: must list 1 to 2 servers, not 0"),
        ({"servers": ["a:1", "b:2", "c:3"]}, "directory.radius.servers: must list 1 to 2 servers, not 3"),
        (
            {"servers": ["radius.example:1812"]},
            'directory.radius.servers[0]: "radius.example:1812" is not an IP address',
        ),
        ({"servers": ["127.0.0.1:70000"]}, "directory.radius.servers[0]"),
        (
            {"servers": ["127.0.0.1", "127.0.0.1:1812"]},
            'directory.radius.servers[1]: "127.0.0.1:1812" is listed twice',
        ),
        ({"servers": "127.0.0.1"}, "directory.radius.servers: must be a list, not a string"),
        ({"timeout": 0}, "directory.radius.timeout: must be between 0.05 and 30 seconds, not 0"),
        ({"retries": 9}, "directory.radius.retries: must be between 0 and 5, not 9"),
        (
            {"group_attribute": "class"},
            'directory.radius.group_attribute: must be "Class" or "Filter-Id", not "class"',
        ),
        ({"role_attribute": 2}, "directory.radius.scope_attribute: must differ from role_attribute (2)"),
        ({"vendor_id": 0}, "directory.radius.vendor_id: must be between 1 and 16777215, not 0"),
        ({"nas_identifier": ""}, "directory.radius.nas_identifier: must be 1 to 253 octets long"),
        (
            {"secrets_file": "x"},
            'directory.radius.secrets_file: unknown key "secrets_file"; did you mean "secret_file"?',
        ),
    ],
)
def test_errors_name_the_key_path(secret_file: Path, change: dict[str, Any], expected: str) -> None:
    table = {"servers": ["127.0.0.1"], "secret_file": str(secret_file), **change}
    found = errors(table, secret_file.parent)
    assert any(expected in e for e in found), found


def test_required_keys(tmp_path: Path) -> None:
    found = errors({}, tmp_path)
    assert any("directory.radius.servers: at least one RADIUS server is required" in e for e in found)
    assert any(
        "directory.radius.secret_file: a file holding the shared secret is required" in e for e in found
    )


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_secret_others_can_read_is_refused(secret_file: Path, mode: int) -> None:
    secret_file.chmod(mode)
    (found,) = errors({"servers": ["127.0.0.1"], "secret_file": str(secret_file)}, secret_file.parent)
    assert f"directory.radius.secret_file: {secret_file} has mode {mode:04o}" in found
    assert "readable by its owner only (chmod 600)" in found


def test_a_read_only_secret_is_fine(secret_file: Path) -> None:
    secret_file.chmod(0o400)
    assert (
        radius_settings({"servers": ["127.0.0.1"], "secret_file": str(secret_file)}, Path("/")).secret
        == SECRET
    )


def test_missing_short_symlinked_or_special_secret_files(tmp_path: Path, secret_file: Path) -> None:
    def one(name: str) -> str:
        (found,) = errors({"servers": ["127.0.0.1"], "secret_file": name}, tmp_path)
        return found

    assert "cannot open" in one("absent")
    assert "No such file" in one("absent")
    short = tmp_path / "short"
    short.write_bytes(b"secret\n")
    short.chmod(0o600)
    assert "must be 16 to 1024 octets long" in one("short")
    (tmp_path / "link").symlink_to(secret_file)
    assert "cannot open" in one("link")
    os.mkfifo(tmp_path / "fifo", 0o600)
    assert "is not a regular file" in one("fifo")


@pytest.mark.parametrize("name", ["", "secret\x00file"])
def test_an_empty_or_unopenable_secret_file_name_is_a_configuration_error(tmp_path: Path, name: str) -> None:
    # A NUL in the name used to reach os.open, whose ValueError escaped the configuration check.
    found = errors({"servers": ["127.0.0.1"], "secret_file": name}, tmp_path)
    assert found == [
        "meterd.toml: directory.radius.secret_file: "
        + ("a file holding the shared secret is required" if not name else "must be a non-empty path")
    ]
