"""A process that records accepted bundles with rising versions, forever, until it is killed.

Used by the crash test: after each commit has returned it prints the version,
so everything printed must be on disk whenever the process dies.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meterd.daemon.bundle_gate import Accepted, BundleGate
from meterd.policy.signed import KeySet, MeterIdentity


def main(directory: Path, kid: str) -> None:
    # The key itself is irrelevant: commit records the signer ids it is given.
    keys = KeySet.of([Ed25519PrivateKey.generate().public_key()], 1)
    gate = BundleGate(keys, MeterIdentity("m1", frozenset()), directory)
    version = max(gate.status(None, 1)["highest_bundle_version"], 0)
    print("ready", flush=True)
    while True:
        version += 1
        gate.commit(Accepted((kid,), version, "0" * 64, None), version)
        print(version, flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
