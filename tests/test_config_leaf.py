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
        if name.split(".")[0] in {"asyncssh", "serial", "prometheus_client", "ldap3", "cffi"}
        or name.startswith(("meterd.guard", "meterd.shell", "meterd.daemon", "meterd.seclog.log"))
        or name.rsplit(".", 1)[-1] in {"listener", "connection", "endpoint"}
        or name.startswith("meterd._")  # the compiled parts: the C sealer and evaluator
    )
    assert runtime == []


def test_the_security_log_section_is_read_beside_the_log_without_loading_the_log() -> None:
    # [security_log] is declared in the seclog package, beside the log's own settings; the
    # package loads its store, writer, sealer, reader and verifiers only when asked for them.
    loaded = _modules_after(_PROBE)
    assert {"meterd.seclog.settings", "meterd.seclog.config"} <= loaded
    seclog = sorted(name for name in loaded if name.startswith("meterd.seclog."))
    assert seclog == ["meterd.seclog.config", "meterd.seclog.settings"]


def test_the_security_log_package_still_offers_its_surface() -> None:
    # Loaded on first use, each name is what it was, the verifier is its module's function
    # (no package name to be rebound by the submodule), and the log brings its C sealer
    # when asked for.
    probe = (
        "import json, sys, types\n"
        "import meterd.seclog\n"
        "from meterd.seclog import EventType, LogConfig, SecurityLog, VerifyReport, __all__\n"
        "from meterd.seclog.verify import verify\n"
        "print(json.dumps([isinstance(verify, types.FunctionType), 'verify' in __all__,"
        " all(getattr(meterd.seclog, name) is not None for name in __all__),"
        " SecurityLog.__module__, LogConfig.__module__, EventType.__module__, VerifyReport.__module__,"
        " any(name.startswith('meterd._seal') for name in sys.modules)]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [
        True,
        False,
        True,
        "meterd.seclog.log",
        "meterd.seclog.config",
        "meterd.seclog.events",
        "meterd.seclog.report",
        True,
    ]


def test_the_toml_reader_belongs_to_neither_policy_nor_configuration() -> None:
    loaded = _modules_after("import json, sys, meterd.tomlreader; print(json.dumps(sorted(sys.modules)))")
    assert not any(name.startswith(("meterd.policy", "meterd.config", "meterd.channels")) for name in loaded)
