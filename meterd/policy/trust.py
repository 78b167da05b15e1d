"""What a meter trusts pushed bundles by: its signing key set and its identity (``meterd.toml``).

Read at start (a bad key set stops the daemon there); verifying a bundle
against them is :mod:`meterd.policy.signed`'s, loaded with the first push.

Invariant, checked in the constructor: a key set's threshold lies between 1
and the number of its keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from meterd.errors import PolicyError
from meterd.record import record


def key_id(key: Ed25519PublicKey) -> str:
    """The key id of a public key: hex SHA-256 of its raw 32 bytes."""
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def public_pem(key: Ed25519PublicKey) -> str:
    """A public key as PEM text."""
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


@record
class KeySet:
    """Trusted signing keys and how many of them must sign.

    Raises:
        PolicyError: The threshold is not between 1 and the number of keys.
    """

    keys: Mapping[str, Ed25519PublicKey]
    threshold: int

    def __post_init__(self) -> None:
        if not 1 <= self.threshold <= len(self.keys):
            raise PolicyError(
                f"threshold {self.threshold} must be between 1 and the number of keys ({len(self.keys)})",
                source="signing keys",
            )

    @classmethod
    def of(cls, keys: Sequence[Ed25519PublicKey], threshold: int) -> KeySet:
        """Build a key set from public keys (duplicates count once)."""
        return cls({key_id(k): k for k in keys}, threshold)

    def to_json(self) -> dict[str, Any]:
        """The ``signed.keys`` form: PEM texts, sorted by key id, and the threshold."""
        return {"keys": [public_pem(self.keys[k]) for k in sorted(self.keys)], "threshold": self.threshold}

    def fingerprint(self) -> str:
        """A short stable name of this exact key set and threshold."""
        return hashlib.sha256((",".join(sorted(self.keys)) + f"/{self.threshold}").encode()).hexdigest()[:16]


@record
class MeterIdentity:
    """What a bundle's targets are matched against (``[daemon] meter_id``, ``meter_labels``)."""

    meter_id: str
    labels: frozenset[str]
