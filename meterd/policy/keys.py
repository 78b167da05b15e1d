"""Structural checks of public-key material named in a policy.

Only shape is checked here (the policy core does no cryptography): an OpenSSH
authorized-key line whose base64 blob names the same key type, and a
``sha256:`` certificate fingerprint.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct

KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
_FINGERPRINT = re.compile(r"^sha256:[0-9a-fA-F]{64}$")


def check_authorized_key(line: str) -> str:
    """Return what is wrong with an authorized-key line, or empty if it is well formed.

    Options before the key type (``from=...``) are not accepted: restrictions
    belong in the policy, where they are reviewed.
    """
    fields = line.split()
    if len(fields) < 2:
        return "must be an OpenSSH public key line: TYPE BASE64 [COMMENT]"
    key_type, blob = fields[0], fields[1]
    if key_type not in KEY_TYPES:
        return f'unsupported key type "{key_type}"'
    try:
        raw = base64.b64decode(blob, validate=True)
        (length,) = struct.unpack(">I", raw[:4])
        inner = raw[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        return "key data is not valid base64 of an SSH public key"
    if inner != key_type:
        return f'key data is a "{inner}" key, not "{key_type}"'
    return ""


def check_fingerprint(text: str) -> str:
    """Return what is wrong with a certificate fingerprint, or empty if it is well formed."""
    if not _FINGERPRINT.match(text):
        return 'must be "sha256:" followed by 64 hex digits (the SHA-256 of the certificate\'s DER)'
    return ""
