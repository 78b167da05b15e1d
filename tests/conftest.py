"""Suite-wide setup: the security log runs its test build (the same C with storage fault injection)."""

from __future__ import annotations

import os

# Set before anything imports the log (this module loads first); child processes inherit it.
os.environ["METERD_SEAL_TEST_BUILD"] = "1"

from meterd.seclog import native

if native.TEST_BUILD_ENV != "METERD_SEAL_TEST_BUILD" or not native.FAULTS:
    raise RuntimeError(
        "the security log's test build is not loaded: run `make` (it builds meterd._seal_faults)"
    )
