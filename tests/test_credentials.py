"""Password and PIN hashing."""

from __future__ import annotations

import time

import pytest

from meterd.credentials import dummy_verify, hash_secret, parse_hash, password_problems, verify_secret
from meterd.errors import CredentialError


def test_hash_and_verify() -> None:
    stored = hash_secret("Meter-Reading-42")
    assert stored.startswith("$scrypt$ln=15,r=8,p=1$")
    assert verify_secret("Meter-Reading-42", stored)
    assert not verify_secret("Meter-Reading-43", stored)
    assert hash_secret("Meter-Reading-42") != stored  # fresh salt every time


def test_malformed_hash_never_verifies() -> None:
    assert not verify_secret("x", "plain-text-password")
    assert not verify_secret("x", "$scrypt$ln=15,r=8,p=1$short$short")
    with pytest.raises(CredentialError):
        parse_hash("$scrypt$ln=40,r=8,p=1$" + "A" * 22 + "$" + "B" * 43)


def test_empty_and_oversized_secrets_are_refused() -> None:
    with pytest.raises(CredentialError):
        hash_secret("")
    with pytest.raises(CredentialError):
        hash_secret("x" * 2000)


def test_unknown_user_costs_what_a_known_one_does() -> None:
    stored = hash_secret("Meter-Reading-42")
    started = time.perf_counter()
    for _ in range(3):
        verify_secret("wrong-guess", stored)
    known = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(3):
        assert not dummy_verify("wrong-guess")
    unknown = time.perf_counter() - started
    # Same scrypt parameters on both paths: within a factor of two even on a busy machine.
    assert 0.5 < unknown / known < 2.0


def test_password_rules() -> None:
    assert password_problems("Short1!", 12, 3) == ["must be at least 12 characters"]
    assert password_problems("alllowercaseletters", 12, 3) == [
        "must mix at least 3 of lower case, upper case, digits and symbols"
    ]
    assert password_problems("Meter-Reading-42", 12, 3) == []
