"""Bundle format 2: the policy text beside signed metadata, verified against an m-of-n key set.

Modelled on The Update Framework's targets metadata (monotonic versions,
expiry, thresholds, delegation of trust by signed key sets) without a
repository: substation meters are pushed to, never pull.  A bundle is::

    {"format": 2,
     "signed": {"type": "meterd-policy", "version": 7,
                "expires": "2030-01-01T00:00:00Z",
                "targets": {"meters": ["m-0042"], "labels": ["substation-7"]},
                "policy_sha256": "<hex SHA-256 of the UTF-8 policy text>",
                "keys": null | {"keys": ["<Ed25519 public key PEM>", ...], "threshold": 2}},
     "policy": "<policy.toml text>",
     "signatures": [{"keyid": "<hex>", "sig": "<base64 Ed25519 signature>"}, ...]}

Each signature covers the canonical JSON of ``signed`` (sorted keys, no
spaces, UTF-8), which pins the policy text through its hash.  A key id is the
hex SHA-256 of the raw 32-byte public key.  ``keys``, when present, is the key
set the meter trusts from then on (key rotation), installed only by a bundle
that the current set's threshold signed.

Invariants, checked in the constructors: a version is a positive integer; a
threshold lies between 1 and the number of keys; a bundle names at least one
target.  Verification (:func:`verify`) is pure: the caller supplies the
trusted keys, the highest versions accepted so far, the meter's identity and
the time.  Every refusal is a :class:`BundleRefusedError` naming the field at
fault and the reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meterd.errors import PolicyError
from meterd.policy.bundle import FORMAT as FORMAT_1
from meterd.policy.bundle import MAX_BUNDLE_BYTES, Bundle, decode_bundle, load_verify_key
from meterd.policy.trust import KeySet, MeterIdentity, key_id, public_pem
from meterd.record import record

__all__ = [
    "FORMAT",
    "MAX_VERSION",
    "TYPE",
    "BundleRefusedError",
    "KeySet",
    "MeterIdentity",
    "Reason",
    "Signed",
    "SignedBundle",
    "decode_any",
    "format_time",
    "key_id",
    "policy_hash",
    "public_pem",
    "verify",
]

FORMAT = 2
TYPE = "meterd-policy"
MAX_VERSION = 2**53  # exact in every JSON reader
_SIGNED_KEYS = ("type", "version", "expires", "targets", "policy_sha256", "keys")


class Reason(Enum):
    """Why a bundle was refused (recorded in the security log)."""

    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown-key"
    TOO_FEW_SIGNATURES = "too-few-signatures"
    REPLAY = "replay"
    EXPIRED = "expired"
    NOT_TARGETED = "not-targeted"
    HASH_MISMATCH = "hash-mismatch"


class BundleRefusedError(PolicyError):
    """A bundle is malformed or fails verification; nothing was changed.

    Attributes:
        reason: Why, as recorded in the security log.
        key_path: The bundle field at fault (e.g. ``signed.expires``).
    """

    def __init__(self, reason: Reason, field_name: str, message: str) -> None:
        self.reason = reason
        super().__init__(message, source="bundle", key_path=field_name)


def format_time(moment: datetime) -> str:
    """A UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@record
class Signed:
    """The signed metadata of a format 2 bundle.

    Raises:
        PolicyError: A version below 1, no target, or a malformed hash.
    """

    version: int
    expires: datetime
    meters: tuple[str, ...]
    labels: tuple[str, ...]
    policy_sha256: str
    keys: KeySet | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.version <= MAX_VERSION:
            raise BundleRefusedError(Reason.MALFORMED, "signed.version", "must be a positive integer")
        if not self.meters and not self.labels:
            raise BundleRefusedError(
                Reason.MALFORMED, "signed.targets", "must name at least one meter id or label"
            )
        if len(self.policy_sha256) != 64 or not all(c in "0123456789abcdef" for c in self.policy_sha256):
            raise BundleRefusedError(
                Reason.MALFORMED, "signed.policy_sha256", "must be 64 lowercase hex digits"
            )

    def to_json(self) -> dict[str, Any]:
        """The JSON object that is signed."""
        return {
            "type": TYPE,
            "version": self.version,
            "expires": format_time(self.expires),
            "targets": {"meters": list(self.meters), "labels": list(self.labels)},
            "policy_sha256": self.policy_sha256,
            "keys": self.keys.to_json() if self.keys else None,
        }

    def canonical(self) -> bytes:
        """The exact bytes every signature covers."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@record
class SignedBundle:
    """A format 2 bundle: policy text, signed metadata and signatures (key id → signature)."""

    policy_text: str
    signed: Signed
    signatures: tuple[tuple[str, bytes], ...] = field(default=())

    def encode(self) -> bytes:
        """Return the bundle's JSON bytes."""
        return json.dumps(
            {
                "format": FORMAT,
                "signed": self.signed.to_json(),
                "policy": self.policy_text,
                "signatures": [{"keyid": k, "sig": base64.b64encode(s).decode()} for k, s in self.signatures],
            },
            indent=1,
        ).encode()

    def sign(self, key: Ed25519PrivateKey) -> SignedBundle:
        """Return this bundle with ``key``'s signature added (replacing an earlier one by the same key)."""
        kid = key_id(key.public_key())
        others = tuple((k, s) for k, s in self.signatures if k != kid)
        return SignedBundle(
            self.policy_text, self.signed, (*others, (kid, key.sign(self.signed.canonical())))
        )


def policy_hash(text: str) -> str:
    """The hex SHA-256 of a policy text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _malformed(field_name: str, message: str) -> BundleRefusedError:
    return BundleRefusedError(Reason.MALFORMED, field_name, message)


def _strings(value: object, field_name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _malformed(field_name, "must be a list of non-empty strings")
    return tuple(value)


def _exact_keys(obj: object, allowed: Sequence[str], field_name: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _malformed(field_name, "must be an object")
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise _malformed(f"{field_name}.{unknown[0]}" if field_name else unknown[0], "unknown field")
    missing = [k for k in allowed if k not in obj]
    if missing:
        raise _malformed(f"{field_name}.{missing[0]}" if field_name else missing[0], "missing")
    return obj


def _key_set(obj: object) -> KeySet | None:
    if obj is None:
        return None
    data = _exact_keys(obj, ("keys", "threshold"), "signed.keys")
    pems = _strings(data["keys"], "signed.keys.keys")
    threshold = data["threshold"]
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        raise _malformed("signed.keys.threshold", "must be an integer")
    try:
        keys = [load_verify_key(p.encode(), "signed.keys.keys") for p in pems]
        return KeySet.of(keys, threshold)
    except PolicyError as e:
        raise _malformed("signed.keys", e.message) from e


def _signed(obj: object) -> Signed:
    data = _exact_keys(obj, _SIGNED_KEYS, "signed")
    if data["type"] != TYPE:
        raise _malformed("signed.type", f'must be "{TYPE}"')
    version = data["version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise _malformed("signed.version", "must be a positive integer")
    try:
        expires = datetime.fromisoformat(str(data["expires"]).replace("Z", "+00:00"))
    except ValueError as e:
        raise _malformed("signed.expires", "must be a UTC time like 2030-01-01T00:00:00Z") from e
    if expires.tzinfo is None:
        raise _malformed("signed.expires", "must name its time zone (end with Z)")
    targets = _exact_keys(data["targets"], ("meters", "labels"), "signed.targets")
    sha = data["policy_sha256"]
    if not isinstance(sha, str):
        raise _malformed("signed.policy_sha256", "must be 64 lowercase hex digits")
    return Signed(
        version=version,
        expires=expires,
        meters=_strings(targets["meters"], "signed.targets.meters"),
        labels=_strings(targets["labels"], "signed.targets.labels"),
        policy_sha256=sha,
        keys=_key_set(data["keys"]),
    )


def _signatures(obj: object) -> tuple[tuple[str, bytes], ...]:
    if not isinstance(obj, list):
        raise _malformed("signatures", "must be a list")
    found: list[tuple[str, bytes]] = []
    for i, item in enumerate(obj):
        entry = _exact_keys(item, ("keyid", "sig"), f"signatures[{i}]")
        if not isinstance(entry["keyid"], str) or not isinstance(entry["sig"], str):
            raise _malformed(f"signatures[{i}]", "keyid and sig must be text")
        try:
            found.append((entry["keyid"], base64.b64decode(entry["sig"], validate=True)))
        except binascii.Error as e:
            raise _malformed(f"signatures[{i}].sig", "is not valid base64") from e
    return tuple(found)


def decode_any(data: bytes) -> Bundle | SignedBundle:
    """Parse bundle bytes of format 1 or 2.

    Raises:
        PolicyError: Not JSON, too large, an unknown format, or (format 2) a
            :class:`BundleRefusedError` naming the malformed field.
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise _malformed("", f"bundle larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _malformed("", "bundle is not JSON") from e
    if isinstance(obj, dict) and obj.get("format") == FORMAT_1:
        return decode_bundle(data)
    top = _exact_keys(obj, ("format", "signed", "policy", "signatures"), "")
    if top["format"] != FORMAT:
        raise _malformed("format", f"must be {FORMAT_1} or {FORMAT}")
    if not isinstance(top["policy"], str):
        raise _malformed("policy", "must be the policy text")
    return SignedBundle(top["policy"], _signed(top["signed"]), _signatures(top["signatures"]))


def _check_signatures(bundle: SignedBundle, trusted: KeySet) -> tuple[str, ...]:
    valid: list[str] = []
    problems: list[str] = []
    message = bundle.signed.canonical()
    for i, (kid, signature) in enumerate(bundle.signatures):
        key = trusted.keys.get(kid)
        if key is None:
            known = ", ".join(k[:16] for k in sorted(trusted.keys))
            raise BundleRefusedError(
                Reason.UNKNOWN_KEY,
                f"signatures[{i}].keyid",
                f"unknown key id {kid[:16]}: this meter trusts {known}",
            )
        try:
            key.verify(signature, message)
        except InvalidSignature:
            problems.append(f"signatures[{i}] by {kid[:16]} does not verify")
            continue
        if kid not in valid:
            valid.append(kid)
    if len(valid) < trusted.threshold:
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise BundleRefusedError(
            Reason.TOO_FEW_SIGNATURES,
            "signatures",
            f"{len(valid)} valid signature(s) from trusted keys, {trusted.threshold} required{detail}",
        )
    return tuple(valid)


def verify(
    bundle: SignedBundle,
    trusted: KeySet,
    highest: Mapping[str, int],
    meter: MeterIdentity,
    now: datetime,
) -> tuple[str, ...]:
    """Check a bundle for a meter that trusts ``trusted``; return the key ids whose signatures count.

    Checked in this order, so nothing unsigned is believed: signatures and
    threshold, version (above the highest accepted with each signing key),
    expiry, targets, then the policy text's hash.

    Raises:
        BundleRefusedError: Naming the field at fault and the reason.
    """
    signers = _check_signatures(bundle, trusted)
    signed = bundle.signed
    for kid in signers:
        if signed.version <= highest.get(kid, 0):
            raise BundleRefusedError(
                Reason.REPLAY,
                "signed.version",
                f"version {signed.version} is not above {highest[kid]}, the highest accepted with key "
                f"{kid[:16]} (a replayed or rolled-back bundle; sign the content under a higher version)",
            )
    if now >= signed.expires:
        raise BundleRefusedError(
            Reason.EXPIRED, "signed.expires", f"the bundle expired at {format_time(signed.expires)}"
        )
    if meter.meter_id not in signed.meters and not meter.labels & set(signed.labels):
        raise BundleRefusedError(
            Reason.NOT_TARGETED,
            "signed.targets",
            f'not targeted at this meter (id "{meter.meter_id}", labels '
            f"{sorted(meter.labels)}): it names meters {list(signed.meters)}, labels {list(signed.labels)}",
        )
    if policy_hash(bundle.policy_text) != signed.policy_sha256:
        raise BundleRefusedError(
            Reason.HASH_MISMATCH, "signed.policy_sha256", "does not match the SHA-256 of the policy text"
        )
    return signers
