"""Bundle format 2: parsing names the field at fault; verification refuses with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meterd.errors import PolicyError
from meterd.policy.bundle import Bundle
from meterd.policy.signed import (
    BundleRefusedError,
    KeySet,
    MeterIdentity,
    Reason,
    SignedBundle,
    decode_any,
    key_id,
    verify,
)
from tests.policy.signing import make_bundle

TEXT = '[users.admin]\nroles = ["rbacmnt"]\n'
A, B, C = (Ed25519PrivateKey.generate() for _ in range(3))
TWO_OF_THREE = KeySet.of([A.public_key(), B.public_key(), C.public_key()], 2)
METER = MeterIdentity("m1", frozenset({"substation-7"}))
NOW = datetime.now(UTC)


def refused(
    bundle: SignedBundle, highest: dict[str, int] | None = None, keys: KeySet = TWO_OF_THREE
) -> BundleRefusedError:
    with pytest.raises(BundleRefusedError) as caught:
        verify(bundle, keys, highest or {}, METER, NOW)
    return caught.value


def test_round_trip_and_threshold_met() -> None:
    bundle = make_bundle(TEXT, [A, C], 3, labels=["substation-7"], meters=[])
    decoded = decode_any(bundle.encode())
    assert decoded == bundle
    assert verify(bundle, TWO_OF_THREE, {}, METER, NOW) == (key_id(A.public_key()), key_id(C.public_key()))


def test_format_1_still_decodes() -> None:
    assert decode_any(Bundle(TEXT).encode()) == Bundle(TEXT)


def test_too_few_valid_signatures() -> None:
    error = refused(make_bundle(TEXT, [A], 1))
    assert error.reason is Reason.TOO_FEW_SIGNATURES
    assert error.render() == "bundle: signatures: 1 valid signature(s) from trusted keys, 2 required"
    # The same key twice counts once.
    twice = make_bundle(TEXT, [A], 1)
    twice = SignedBundle(twice.policy_text, twice.signed, twice.signatures * 2)
    assert refused(twice).reason is Reason.TOO_FEW_SIGNATURES


def test_a_signature_over_other_metadata_does_not_count() -> None:
    good = make_bundle(TEXT, [A, B], 5)
    other = make_bundle(TEXT, [B], 6)
    mixed = SignedBundle(TEXT, good.signed, (good.signatures[0], other.signatures[0]))
    error = refused(mixed)
    assert error.reason is Reason.TOO_FEW_SIGNATURES
    assert "signatures[1] by" in error.message
    assert "does not verify" in error.message


def test_unknown_key_id() -> None:
    stranger = Ed25519PrivateKey.generate()
    error = refused(make_bundle(TEXT, [A, B, stranger], 1))
    assert error.reason is Reason.UNKNOWN_KEY
    assert error.key_path == "signatures[2].keyid"
    assert f"unknown key id {key_id(stranger.public_key())[:16]}" in error.message


@pytest.mark.parametrize("recorded", [4, 5])
def test_lower_or_equal_version_is_a_replay(recorded: int) -> None:
    bundle = make_bundle(TEXT, [A, B], 4)
    error = refused(bundle, {key_id(B.public_key()): recorded})
    assert error.reason is Reason.REPLAY
    assert error.key_path == "signed.version"
    assert f"version 4 is not above {recorded}" in error.message
    # A key that never signed a later bundle does not make it acceptable: B's record refuses it.
    assert verify(make_bundle(TEXT, [A, C], 4), TWO_OF_THREE, {key_id(B.public_key()): recorded}, METER, NOW)


def test_expired() -> None:
    error = refused(make_bundle(TEXT, [A, B], 1, expires=NOW - timedelta(seconds=1)))
    assert error.reason is Reason.EXPIRED
    assert error.key_path == "signed.expires"


def test_not_targeted() -> None:
    error = refused(make_bundle(TEXT, [A, B], 1, meters=["m2"], labels=["substation-8"]))
    assert error.reason is Reason.NOT_TARGETED
    assert error.key_path == "signed.targets"
    assert 'id "m1"' in error.message


def test_policy_text_swapped_under_the_signatures() -> None:
    bundle = make_bundle(TEXT, [A, B], 1)
    swapped = SignedBundle(TEXT.replace("rbacmnt", "secadm"), bundle.signed, bundle.signatures)
    error = refused(swapped)
    assert error.reason is Reason.HASH_MISMATCH
    assert error.key_path == "signed.policy_sha256"


def test_checks_run_signatures_first() -> None:
    # An unsigned, expired, mistargeted bundle is refused for its signatures: nothing unsigned is believed.
    bundle = make_bundle(TEXT, [], 1, meters=["m9"], expires=NOW - timedelta(days=1))
    assert refused(bundle).reason is Reason.TOO_FEW_SIGNATURES


def mutate(path: list[str | int], value: object) -> BundleRefusedError:
    obj = json.loads(make_bundle(TEXT, [A, B], 1).encode())
    target = obj
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    with pytest.raises(BundleRefusedError) as caught:
        decode_any(json.dumps(obj).encode())
    assert caught.value.reason is Reason.MALFORMED
    return caught.value


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["format"], 3, "format"),
        (["signed", "version"], 0, "signed.version"),
        (["signed", "version"], "7", "signed.version"),
        (["signed", "expires"], "tomorrow", "signed.expires"),
        (["signed", "expires"], "2030-01-01T00:00:00", "signed.expires"),
        (["signed", "targets", "meters"], "m1", "signed.targets.meters"),
        (["signed", "targets"], {"meters": [], "labels": []}, "signed.targets"),
        (["signed", "policy_sha256"], "abc", "signed.policy_sha256"),
        (["signed", "type"], "other", "signed.type"),
        (["signed", "expirs"], "x", "signed.expirs"),
        (["signed", "keys"], {"keys": [], "threshold": 1}, "signed.keys"),
        (["signatures", 0, "sig"], "!!", "signatures[0].sig"),
        (["signatures", 0, "keyid"], KeyError, "signatures[0].keyid"),
        (["policy"], 5, "policy"),
    ],
)
def test_malformed_fields_are_named(path: list[str | int], value: object, field: str) -> None:
    assert mutate(path, value).key_path == field


def test_threshold_must_fit_the_key_set() -> None:
    with pytest.raises(PolicyError, match="threshold 3 must be between 1 and the number of keys"):
        KeySet.of([A.public_key(), B.public_key()], 3)
