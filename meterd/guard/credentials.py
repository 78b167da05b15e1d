"""What a principal presents at login, and how it is checked against the meter's credentials.

The check is pure apart from the deliberate cost of scrypt; the guard decides
what a failure means (lockout counting, the answer the client sees).  A
user's password, PIN and SSH keys come from the :class:`Credentials` snapshot
the guard holds (loaded from the credential store), never from the policy; the
policy says who exists and whether they are enabled.
"""

from __future__ import annotations

from meterd.credentials import dummy_verify, verify_secret
from meterd.policy.credentials import Credentials
from meterd.policy.model import Application, Policy, User
from meterd.record import record


@record
class Password:
    """A password typed at a login prompt (SSH, serial)."""

    secret: str

    def __repr__(self) -> str:
        return "Password(<redacted>)"


@record
class Pin:
    """A front-panel PIN."""

    secret: str

    def __repr__(self) -> str:
        return "Pin(<redacted>)"


@record
class PublicKey:
    """An SSH public key whose signature the transport has verified.

    Attributes:
        key_type: e.g. ``ssh-ed25519``.
        blob: The key's base64 blob as in an authorized-key line.
    """

    key_type: str
    blob: str


@record
class Certificate:
    """A TLS client certificate the transport has verified against the trusted CA.

    Attributes:
        fingerprint: ``sha256:<hex>`` of the certificate's DER.
    """

    fingerprint: str


Credential = Password | Pin | PublicKey | Certificate


def _key_matches(lines: tuple[str, ...], key: PublicKey) -> bool:
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == key.key_type and fields[1] == key.blob:
            return True
    return False


def counts_toward_lockout(credential: Credential) -> bool:
    """True for guessable secrets; offering a key or certificate that is not listed is not a guess."""
    return isinstance(credential, Password | Pin)


def check_credential(policy: Policy, credentials: Credentials, name: str, credential: Credential) -> bool:
    """Return True if ``credential`` proves identity ``name``.

    A user of ``policy`` is checked against its entry in ``credentials`` (an
    entry for a name the policy does not have proves nothing); an application
    against its certificates and keys in ``policy``.  Unknown names and missing
    hashes cost the same scrypt work as a real check, so response time does not
    reveal which names exist.
    """
    principal: User | Application | None = policy.users.get(name) or policy.applications.get(name)
    if isinstance(credential, Password | Pin):
        stored = None
        if isinstance(principal, User):
            entry = credentials.of(name)
            stored = entry.password_hash if isinstance(credential, Password) else entry.pin_hash
        if stored is None:
            return dummy_verify(credential.secret)
        return verify_secret(credential.secret, stored)
    if isinstance(credential, PublicKey):
        if isinstance(principal, User):
            return _key_matches(credentials.of(name).ssh_keys, credential)
        return principal is not None and _key_matches(principal.ssh_keys, credential)
    return (
        isinstance(principal, Application) and credential.fingerprint.lower() in principal.cert_fingerprints
    )


def application_for_certificate(policy: Policy, fingerprint: str) -> str | None:
    """Return the application a certificate fingerprint identifies, or None."""
    wanted = fingerprint.lower()
    for name, app in sorted(policy.applications.items()):
        if wanted in app.cert_fingerprints:
            return name
    return None
