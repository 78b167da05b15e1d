"""meterd's C parts as the guest built them: compiled for the guest's architecture and passing their tests there.

On x86_64 the wheel comes from the host (the README's install); on arm64 the README's
pip step compiles the source distribution inside the guest. Either way the checkout's
tests of the evaluator and the sealer run in the guest against the installed package:
all of them on arm64, where the compiled code differs from the host's; on x86_64 (the
host's architecture, whose suite runs them all) the example-based ones, since their
property-based siblings take minutes under TCG.
"""

from __future__ import annotations

import pytest

from .meter import ARM64, Meter

pytestmark = pytest.mark.rig

SITE = "/opt/meterd/lib/python3.11/site-packages/meterd"
#: ELF e_machine of each architecture the rig boots.
MACHINES = {"x86_64": 62, "aarch64": 183}
TESTS = "tests/policy/test_table.py tests/policy/test_evaluator.py tests/seclog/test_sealer.py"
#: Put beside the tests in the guest: leaves out the property-based tests on request.
CONFTEST = """
import os

def pytest_collection_modifyitems(config, items):
    if os.environ.get("NATIVE_EXAMPLES_ONLY"):
        keep = [i for i in items if not getattr(getattr(i, "obj", None), "is_hypothesis_test", False)]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
"""


def test_the_c_parts_are_built_for_the_guest(meter: Meter) -> None:
    machine = MACHINES[meter.sh("uname -m").strip()]
    for module in ("_evaluator", "_seal"):
        found = meter.sh(f"ls {SITE}/{module}.*.so").split()
        assert len(found) == 1, found
        header = meter.exec("head", "-c", "20", found[0]).stdout
        assert header[:4] == b"\x7fELF"
        assert int.from_bytes(header[18:20], "little") == machine, (found[0], header)


def test_the_c_parts_pass_their_tests_in_the_guest(meter: Meter) -> None:
    # The installed package, not a copy: the tests' tree has no meterd/ of its own.
    assert meter.sh("ls /root/native-tests").split() in (
        ["lib", "pyproject.toml", "tests", "wheels"],
        ["conftest.py", "lib", "pyproject.toml", "tests", "wheels"],
    )
    meter.exec("/bin/sh", "-c", "cat > /root/native-tests/conftest.py", stdin=CONFTEST.encode())
    only = "" if ARM64 else "NATIVE_EXAMPLES_ONLY=1 "
    result = meter.exec(
        "/bin/sh",
        "-c",
        f"cd /root/native-tests && {only}PYTHONPATH=/root/native-tests/lib "
        f"/opt/meterd/bin/python -m pytest -q -p no:cacheprovider -m 'not rig' {TESTS}",
        timeout=600,
        check=False,
    )
    out = result.stdout.decode() + result.stderr.decode()
    assert result.status == 0, out
    assert " passed" in out, out
    assert " failed" not in out, out
