"""Password and PIN hashing: scrypt (memory-hard, in the standard library).

Format: ``$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt b64>$<hash b64>`` (unpadded
standard base64).  The parameters travel with the hash so they can be raised
later without invalidating stored hashes; hashes weaker than
:data:`MIN_LOG2_N` are refused when a policy is loaded.

Verification compares in constant time, and :func:`dummy_verify` spends the
same effort for an unknown user so that timing does not reveal which user
names exist.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import secrets

from meterd.errors import CredentialError
from meterd.record import record

DEFAULT_LOG2_N = 15
MIN_LOG2_N = 14
MAX_LOG2_N = 20
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_SECRET_BYTES = 1024

_FORMAT = re.compile(
    r"^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{16,})\$([A-Za-z0-9+/]{32,})$"
)


@record
class ScryptHash:
    """A parsed scrypt hash.

    Attributes:
        log2_n: CPU/memory cost exponent.
        r: Block size.
        p: Parallelism.
        salt: Random salt.
        digest: Derived key.

    """

    log2_n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        """Return the hash in its text format."""
        salt = base64.b64encode(self.salt).decode().rstrip("=")
        digest = base64.b64encode(self.digest).decode().rstrip("=")
        return f"$scrypt$ln={self.log2_n},r={self.r},p={self.p}${salt}${digest}"


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def parse_hash(text: str) -> ScryptHash:
    """Parse a stored hash.

    Raises:
        CredentialError: If ``text`` is not a well-formed scrypt hash of acceptable strength.

    """
    match = _FORMAT.match(text)
    if match is None:
        raise CredentialError("not a password hash (make one with `meterctl user hash-password`)")
    log2_n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    if not MIN_LOG2_N <= log2_n <= MAX_LOG2_N or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise CredentialError(
            f"password hash parameters ln={log2_n},r={r},p={p} are outside the allowed range"
        )
    try:
        salt, digest = _b64decode(match.group(4)), _b64decode(match.group(5))
    except ValueError as e:
        raise CredentialError("password hash is not valid base64") from e
    return ScryptHash(log2_n, r, p, salt, digest)


def _derive(secret: str, *, log2_n: int, r: int, p: int, salt: bytes, length: int) -> bytes:
    data = secret.encode()
    if len(data) > MAX_SECRET_BYTES:
        raise CredentialError("secret is too long")
    # maxmem must cover 128 * r * N bytes, or OpenSSL refuses the derivation.
    maxmem = 129 * r * (1 << log2_n) + 1024 * 1024
    return hashlib.scrypt(data, salt=salt, n=1 << log2_n, r=r, p=p, maxmem=maxmem, dklen=length)


def hash_secret(secret: str, *, log2_n: int = DEFAULT_LOG2_N) -> str:
    """Hash a password or PIN with a fresh random salt.

    Raises:
        CredentialError: If the secret is empty or too long.

    """
    if not secret:
        raise CredentialError("secret is empty")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _derive(secret, log2_n=log2_n, r=DEFAULT_R, p=DEFAULT_P, salt=salt, length=HASH_BYTES)
    return ScryptHash(log2_n, DEFAULT_R, DEFAULT_P, salt, digest).encode()


def verify_secret(secret: str, stored: str) -> bool:
    """Return True if ``secret`` matches ``stored``; False on any mismatch or malformed hash."""
    try:
        parsed = parse_hash(stored)
        candidate = _derive(
            secret, log2_n=parsed.log2_n, r=parsed.r, p=parsed.p, salt=parsed.salt, length=len(parsed.digest)
        )
    except CredentialError:
        return False
    return hmac.compare_digest(candidate, parsed.digest)


_DUMMY_SALT = secrets.token_bytes(SALT_BYTES)


def dummy_verify(secret: str) -> bool:
    """Spend what a real verification costs, then fail: used for unknown users."""
    with contextlib.suppress(CredentialError):
        _derive(secret, log2_n=DEFAULT_LOG2_N, r=DEFAULT_R, p=DEFAULT_P, salt=_DUMMY_SALT, length=HASH_BYTES)
    return False


def password_problems(password: str, min_length: int, min_classes: int) -> list[str]:
    """Return why ``password`` breaks the rules (empty when it is acceptable)."""
    problems = []
    if len(password) < min_length:
        problems.append(f"must be at least {min_length} characters")
    classes = sum(
        any(test(c) for c in password)
        for test in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )
    if classes < min_classes:
        problems.append(f"must mix at least {min_classes} of lower case, upper case, digits and symbols")
    return problems
