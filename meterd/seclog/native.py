"""The security log's compiled part (``native/meterd_seal.c``, ``native/meterd_sync.c``): its one importer.

The daemon runs ``meterd._seal``.  The test suite runs ``meterd._seal_faults``:
the same code compiled with ``MTR_SYNC_FAULTS``, which adds storage fault
injection (:meth:`meterd.seclog.syncer.Syncer.set_fault`) for the failure and
crash tests.  ``make`` builds it in place for the tests (``python
native/build_seal.py --test-build``); it is never part of an installed
package, so setting :data:`TEST_BUILD_ENV` outside a development checkout
only makes the log fail to load.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

#: Set to ``1`` (by the test suite, before the log is imported) to load the test build.
TEST_BUILD_ENV = "METERD_SEAL_TEST_BUILD"

_module = importlib.import_module(
    "meterd._seal_faults" if os.environ.get(TEST_BUILD_ENV) == "1" else "meterd._seal"
)
ffi: Any = _module.ffi
lib: Any = _module.lib

#: True in the test build: storage faults can be injected.
FAULTS: bool = hasattr(lib, "mtr_syncer_set_fault")
