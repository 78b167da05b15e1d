"""``meterctl policy sign``: write a signed policy bundle, or add a signature to one.

Format 2 (``--version``, ``--expires``, ``--target``): the policy text beside
signed metadata (see :mod:`meterd.policy.signed`).  With a threshold above
one, each key holder adds a signature in turn: ``meterctl policy sign
bundle.json --key mine.pem --out bundle.json`` co-signs an existing bundle
without changing what it says.  ``--install-key``/``--install-threshold`` make
a key rotation bundle.  Without ``--version`` the command writes format 1 (an
Ed25519 signature over the text), which only meters without signing keys accept.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from meterd.errors import PolicyError
from meterd.policy.bundle import Bundle, load_verify_key, sign
from meterd.policy.signed import KeySet, Signed, SignedBundle, decode_any, format_time, policy_hash

EXIT_OK, EXIT_BAD_INPUT = 0, 2
_DURATION = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sign`` to ``meterctl policy``."""
    p = sub.add_parser("sign", help="write a signed policy bundle, or add a signature to one")
    p.add_argument("file", type=Path, metavar="FILE", help="policy.toml, or a format 2 bundle to co-sign")
    p.add_argument(
        "--key", type=Path, action="append", required=True, help="Ed25519 private key (PEM); repeatable"
    )
    p.add_argument("--out", type=Path, required=True, help="bundle file to write")
    p.add_argument("--version", type=int, help="bundle version (format 2): above every earlier one")
    p.add_argument(
        "--expires", help="expiry: a UTC time (2030-01-01T00:00:00Z) or a duration (30d, 12h, 90m)"
    )
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="meter:ID|label:NAME",
        help="a meter id or label the bundle is for; repeatable",
    )
    p.add_argument(
        "--install-key", type=Path, action="append", default=[], help="key rotation: a new public key"
    )
    p.add_argument("--install-threshold", type=int, help="key rotation: how many new keys must sign")
    p.set_defaults(handler=_sign)


def _private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise PolicyError("not an unencrypted PEM private key", source=str(path)) from e
    if not isinstance(key, Ed25519PrivateKey):
        raise PolicyError("the signing key must be Ed25519", source=str(path))
    return key


def expiry(text: str, now: datetime) -> datetime:
    """Parse ``--expires``: a duration from ``now`` or an ISO 8601 time with a zone.

    Raises:
        PolicyError: Neither.
    """
    match = _DURATION.match(text)
    if match:
        return now + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise PolicyError(f'"{text}" is neither a time nor a duration like 30d', source="--expires") from e
    if moment.tzinfo is None:
        raise PolicyError("the time must name its zone (end with Z)", source="--expires")
    return moment


def _targets(values: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    meters: list[str] = []
    labels: list[str] = []
    for value in values:
        kind, _, name = value.partition(":")
        if kind not in {"meter", "label"} or not name:
            raise PolicyError(f'"{value}" must be meter:ID or label:NAME', source="--target")
        (meters if kind == "meter" else labels).append(name)
    return tuple(meters), tuple(labels)


def _new_bundle(args: argparse.Namespace, text: str) -> SignedBundle:
    if not args.expires or not args.target:
        raise PolicyError("a format 2 bundle needs --expires and at least one --target", source="sign")
    meters, labels = _targets(args.target)
    install = None
    if args.install_key:
        public: list[Ed25519PublicKey] = [load_verify_key(p.read_bytes(), str(p)) for p in args.install_key]
        install = KeySet.of(public, args.install_threshold or len(public))
    moment = expiry(args.expires, datetime.now(UTC)).replace(microsecond=0)
    signed = Signed(args.version, moment, meters, labels, policy_hash(text), install)
    return SignedBundle(text, signed)


def _sign(args: argparse.Namespace) -> int:
    try:
        raw = args.file.read_bytes()
        keys = [_private_key(path) for path in args.key]
        existing = decode_any(raw) if raw.lstrip().startswith(b"{") else None
        if isinstance(existing, SignedBundle):
            if args.version is not None or args.expires or args.target or args.install_key:
                raise PolicyError(
                    "co-signing changes nothing the bundle says; drop --version etc.", source="sign"
                )
            bundle = existing
        elif args.version is not None:
            text = existing.policy_text if existing else raw.decode("utf-8")
            bundle = _new_bundle(args, text)
        else:
            text = existing.policy_text if existing else raw.decode("utf-8")
            if len(keys) != 1:
                raise PolicyError(
                    "format 1 takes one --key; use --version for threshold bundles", source="sign"
                )
            args.out.write_bytes(Bundle(text, sign(text, args.key[0].read_bytes())).encode())
            print(f"{args.out}: signed bundle (format 1) of {args.file}")
            return EXIT_OK
        for key in keys:
            bundle = bundle.sign(key)
        args.out.write_bytes(bundle.encode())
    except (OSError, UnicodeDecodeError, PolicyError) as e:
        print(f"meterctl: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    signers = ", ".join(k[:16] for k, _ in bundle.signatures)
    print(
        f"{args.out}: bundle version {bundle.signed.version}, expires {format_time(bundle.signed.expires)}, "
        f"signed by {signers}"
    )
    return EXIT_OK
