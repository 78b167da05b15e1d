"""Policy bundles: what the configuration tool pushes, optionally signed with Ed25519.

A bundle is one JSON object: ``{"format": 1, "policy": "<policy.toml text>",
"signature": "<base64 Ed25519 signature of the UTF-8 policy text>" | null}``.
Signing covers the exact policy text, so what the meter validates is what the
tool signed.  Pure: encoding, decoding and signature checks, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from meterd.errors import PolicyError
from meterd.record import record

FORMAT = 1
MAX_BUNDLE_BYTES = 4 * 1024 * 1024


@record
class Bundle:
    """A policy as pushed.

    Attributes:
        policy_text: The policy file's text.
        signature: Ed25519 signature over the UTF-8 text, or None.
    """

    policy_text: str
    signature: bytes | None = None

    def encode(self) -> bytes:
        """Return the bundle's JSON bytes."""
        signature = base64.b64encode(self.signature).decode() if self.signature else None
        return json.dumps({"format": FORMAT, "policy": self.policy_text, "signature": signature}).encode()


def decode_bundle(data: bytes) -> Bundle:
    """Parse bundle bytes.

    Raises:
        PolicyError: Not a bundle of a known format, or too large.
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise PolicyError(f"bundle larger than {MAX_BUNDLE_BYTES} bytes", source="bundle")
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PolicyError("bundle is not JSON", source="bundle") from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or not isinstance(obj.get("policy"), str):
        raise PolicyError(f"bundle must be an object with format {FORMAT} and a policy text", source="bundle")
    signature = obj.get("signature")
    if signature is None:
        return Bundle(obj["policy"])
    if not isinstance(signature, str):
        raise PolicyError("bundle signature must be base64 text", source="bundle")
    try:
        return Bundle(obj["policy"], base64.b64decode(signature, validate=True))
    except binascii.Error as e:
        raise PolicyError("bundle signature is not valid base64", source="bundle") from e


def sign(policy_text: str, private_key_pem: bytes) -> bytes:
    """Sign policy text with the configuration tool's Ed25519 private key (PEM).

    Raises:
        PolicyError: The key is not an unencrypted Ed25519 private key.
    """
    try:
        key = load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise PolicyError("not an unencrypted PEM private key", source="signing key") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise PolicyError("the signing key must be Ed25519", source="signing key")
    return key.sign(policy_text.encode("utf-8"))


def load_verify_key(public_key_pem: bytes, source: str) -> Ed25519PublicKey:
    """Load the configuration tool's Ed25519 public key (PEM).

    Raises:
        PolicyError: Not an Ed25519 public key.
    """
    try:
        key = load_pem_public_key(public_key_pem)
    except (ValueError, TypeError) as e:
        raise PolicyError("not a PEM public key", source=source) from e
    if not isinstance(key, Ed25519PublicKey):
        raise PolicyError("the policy signing key must be Ed25519", source=source)
    return key


def check_signature(bundle: Bundle, key: Ed25519PublicKey | None) -> None:
    """Refuse an unsigned or wrongly signed bundle when the meter has a signing key.

    Raises:
        PolicyError: The signature is missing or does not verify.
    """
    if key is None:
        return
    if bundle.signature is None:
        raise PolicyError("this meter accepts only signed policy bundles", source="bundle")
    try:
        key.verify(bundle.signature, bundle.policy_text.encode("utf-8"))
    except InvalidSignature as e:
        raise PolicyError(
            "bundle signature does not verify with this meter's policy signing key", source="bundle"
        ) from e
