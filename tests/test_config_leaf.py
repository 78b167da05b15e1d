"""Configuration is a leaf: reading meterd.toml loads no channel, shell, guard or their libraries."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = "import json, sys, meterd.config; print(json.dumps(sorted(sys.modules)))"


def _modules_after(statement: str) -> set[str]:
    # A fresh interpreter: this one has long since imported everything.
    out = subprocess.run([sys.executable, "-c", statement], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_importing_the_configuration_loads_no_runtime_part() -> None:
    loaded = _modules_after(_PROBE)
    assert "meterd.config" in loaded
    runtime = sorted(
        name
        for name in loaded
        if name.split(".")[0] in {"asyncssh", "serial", "prometheus_client"}
        or name.startswith(("meterd.guard", "meterd.shell", "meterd.daemon", "meterd.seclog.log"))
        or name.rsplit(".", 1)[-1] in {"listener", "connection", "endpoint"}
    )
    assert runtime == []


def test_the_toml_reader_belongs_to_neither_policy_nor_configuration() -> None:
    loaded = _modules_after("import json, sys, meterd.tomlreader; print(json.dumps(sorted(sys.modules)))")
    assert not any(name.startswith(("meterd.policy", "meterd.config", "meterd.channels")) for name in loaded)
