"""The meter's trust in pushed bundles: its key set and the highest version accepted per key, on disk.

The state lives in ``policy/bundles.json`` below the state directory and is
replaced only by :func:`~meterd.fsutil.atomic_write` (written, synced,
renamed, directory synced), so after a crash or ``kill -9`` it holds either
the state before an accepted push or the state after it, never less.  It
keeps:

* ``highest``: per key id, the highest bundle version accepted with that
  key's signature.  It only goes up, and it survives key rotation and a
  change of the configured keys;
* ``keys``: a key set installed by a rotation bundle, and ``base``, the
  fingerprint of the configured key set it replaced.  Editing the configured
  keys in ``meterd.toml`` (a local act of whoever controls the meter's
  configuration) puts the configured set back in force;
* ``last``: the last accepted bundle (version, policy hash) and the policy
  store version it produced, so a push of the bundle already in force can be
  told apart from a change.

A meter with no configured signing key accepts format 1 bundles only: it has
no key to check a format 2 bundle's signatures, and it refuses what it cannot verify.

The gate's state and key set are read at start (a corrupt one stops the
daemon there); the verifier (:mod:`meterd.policy.signed`) loads with the
first push.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meterd.errors import ConfigError
from meterd.fsutil import atomic_write
from meterd.policy.bundle import Bundle, load_verify_key
from meterd.policy.trust import KeySet, MeterIdentity
from meterd.record import record

if TYPE_CHECKING:
    from meterd.policy.signed import SignedBundle

STATE_FILE = "bundles.json"


@record
class Accepted:
    """A bundle that passed every check (nothing is recorded until :meth:`BundleGate.commit`).

    Attributes:
        signers: Key ids whose signatures counted (empty for format 1).
        version: The bundle version, or None for format 1.
        policy_sha256: SHA-256 of the policy text.
        keys: A key set the bundle installs, or None.
    """

    signers: tuple[str, ...]
    version: int | None
    policy_sha256: str
    keys: KeySet | None


class BundleGate:
    """Verifies pushed bundles for one meter and remembers what it accepted.

    Args:
        configured: The key set from ``meterd.toml``, or None (format 1 only).
        meter: This meter's id and labels.
        directory: Where ``bundles.json`` lives (the policy store's directory).

    Raises:
        ConfigError: The state file is unreadable or corrupt (the daemon must not start).
    """

    def __init__(self, configured: KeySet | None, meter: MeterIdentity, directory: Path) -> None:
        self.configured = configured
        self.meter = meter
        self.path = directory / STATE_FILE
        self._state = self._load()

    def _load(self) -> dict[str, Any]:
        try:
            state = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {"base": "", "keys": None, "highest": {}, "last": None}
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read the bundle state: {e}", source=str(self.path)) from e
        if not isinstance(state, dict) or not isinstance(state.get("highest"), dict):
            raise ConfigError("corrupt bundle state", source=str(self.path))
        return state

    def trusted(self) -> KeySet | None:
        """The key set in force: an installed rotation over the configured set it replaced."""
        if self.configured is None:
            return None
        rotated = self._state.get("keys")
        if rotated and self._state.get("base") == self.configured.fingerprint():
            try:
                keys = [load_verify_key(pem.encode(), str(self.path)) for pem in rotated["keys"]]
                return KeySet.of(keys, int(rotated["threshold"]))
            except (ConfigError, KeyError, TypeError, ValueError) as e:
                raise ConfigError(f"corrupt installed key set: {e}", source=str(self.path)) from e
        return self.configured

    def check(self, bundle: Bundle | SignedBundle, now: datetime | None = None) -> Accepted:
        """Verify a bundle; change nothing.

        Raises:
            BundleRefusedError: Naming the field at fault and the reason.
        """
        from meterd.policy.signed import (  # noqa: PLC0415 - see the module docstring
            BundleRefusedError,
            Reason,
            SignedBundle,
            policy_hash,
            verify,
        )

        trusted = self.trusted()
        if trusted is None:
            if isinstance(bundle, SignedBundle):
                raise BundleRefusedError(
                    Reason.UNSIGNED,
                    "format",
                    "this meter has no policy signing keys configured, so it cannot verify a format 2 bundle",
                )
            return Accepted((), None, policy_hash(bundle.policy_text), None)
        if not isinstance(bundle, SignedBundle):
            raise BundleRefusedError(
                Reason.UNSIGNED,
                "format",
                "this meter accepts only format 2 bundles signed by its policy signing keys",
            )
        highest = {k: int(v) for k, v in self._state["highest"].items()}
        signers = verify(bundle, trusted, highest, self.meter, now or datetime.now(UTC))
        return Accepted(signers, bundle.signed.version, bundle.signed.policy_sha256, bundle.signed.keys)

    def commit(self, accepted: Accepted, store_version: int) -> None:
        """Durably record an accepted bundle that is now in force as ``store_version``.

        Raises:
            OSError: The state could not be written (the previous state is intact).
        """
        state = dict(self._state)
        highest = dict(state["highest"])
        # The keys a rotation installs start at its version: the new set cannot go below it either.
        installed = tuple(accepted.keys.keys) if accepted.keys is not None else ()
        for kid in (*accepted.signers, *installed):
            if accepted.version is not None:
                highest[kid] = max(int(highest.get(kid, 0)), accepted.version)
        state["highest"] = highest
        if accepted.keys is not None and self.configured is not None:
            state["keys"] = accepted.keys.to_json()
            state["base"] = self.configured.fingerprint()
        state["last"] = {
            "version": accepted.version,
            "policy_sha256": accepted.policy_sha256,
            "store_version": store_version,
        }
        atomic_write(self.path, json.dumps(state, indent=1, sort_keys=True).encode())
        self._state = state

    def status(self, store_version: int | None, policy_version: int) -> dict[str, Any]:
        """What ``meterd-policy status`` reports (for fleet compliance reports)."""
        last = self._state.get("last") or {}
        in_force = last.get("store_version") == store_version and store_version is not None
        trusted = self.trusted()
        return {
            "meter_id": self.meter.meter_id,
            "meter_labels": sorted(self.meter.labels),
            "store_version": store_version,
            "policy_version": policy_version,
            "bundle_version": last.get("version") if in_force else None,
            "bundle_sha256": last.get("policy_sha256") if in_force else None,
            "highest_bundle_version": max((int(v) for v in self._state["highest"].values()), default=0),
            "signing_keys": sorted(trusted.keys) if trusted else [],
            "threshold": trusted.threshold if trusted else 0,
        }
