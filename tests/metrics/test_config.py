from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meterd.configspec import Base
from meterd.errors import ConfigError
from meterd.metrics import LOADER, MetricsConfig
from meterd.tomlreader import Reader


def _load(table: dict[str, Any]) -> tuple[MetricsConfig, list[ConfigError]]:
    errors: list[ConfigError] = []
    config = LOADER.load(Reader(table, "metrics", "meterd.toml", errors), {Base.CONFIG: Path("/etc/meterd")})
    return config, errors


def test_defaults_listen_on_loopback() -> None:
    assert _load({}) == (MetricsConfig(enabled=True, listen="127.0.0.1", port=9102), [])


def test_values_are_read() -> None:
    config, errors = _load({"enabled": False, "listen": "::1", "port": 9200})
    assert errors == []
    assert config == MetricsConfig(enabled=False, listen="::1", port=9200)


def test_unknown_key_is_an_error_with_a_suggestion() -> None:
    _, errors = _load({"lisen": "0.0.0.0"})
    assert [e.render() for e in errors] == [
        'meterd.toml: metrics.lisen: unknown key "lisen"; did you mean "listen"?'
    ]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"listen": "localhost"}, 'metrics.listen: must be an IP address, not "localhost"'),
        ({"listen": 127}, "metrics.listen: must be a string, not an integer"),
        ({"port": 0}, "metrics.port: must be between 1 and 65535, not 0"),
        ({"port": 70000}, "metrics.port: must be between 1 and 65535, not 70000"),
        ({"port": "9102"}, "metrics.port: must be an integer, not a string"),
        ({"enabled": "yes"}, "metrics.enabled: must be true or false, not a string"),
    ],
)
def test_bad_values_are_errors_and_fall_back_to_defaults(table: dict[str, Any], message: str) -> None:
    config, errors = _load(table)
    assert [e.render() for e in errors] == [f"meterd.toml: {message}"]
    assert config == MetricsConfig()
