"""Building format 2 bundles in tests: keys made at run time, never stored."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meterd.policy.signed import KeySet, Signed, SignedBundle, policy_hash

FUTURE = datetime.now(UTC) + timedelta(days=30)


def make_bundle(
    text: str,
    signers: Sequence[Ed25519PrivateKey],
    version: int,
    *,
    meters: Sequence[str] = ("m1",),
    labels: Sequence[str] = (),
    expires: datetime = FUTURE,
    install: KeySet | None = None,
) -> SignedBundle:
    """A bundle of ``text`` signed by every key in ``signers``."""
    signed = Signed(
        version, expires.replace(microsecond=0), tuple(meters), tuple(labels), policy_hash(text), install
    )
    bundle = SignedBundle(text, signed)
    for key in signers:
        bundle = bundle.sign(key)
    return bundle
