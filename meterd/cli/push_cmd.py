"""``meterctl policy push|rollback|sign|keygen``: the configuration tool's side of a policy push.

The transport is the operator's own OpenSSH client (their keys, agent and
known_hosts apply): ``ssh -p PORT USER@HOST meterd-policy push`` with the
bundle on standard input.  The meter validates, lints and applies; this side
only packages, signs and reports.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from meterd.errors import PolicyError
from meterd.policy.bundle import Bundle, decode_bundle, sign

EXIT_OK, EXIT_FINDING, EXIT_BAD_INPUT = 0, 1, 2
SSH_FAILURE = 255
TIMEOUT = 120


def add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add push, rollback, sign and keygen to ``meterctl policy``."""
    p = sub.add_parser("push", help="send a policy (or a signed bundle) to a meter over SSH")
    p.add_argument("file", type=Path, metavar="FILE", help="policy.toml, or a bundle from `policy sign`")
    _remote_arguments(p)
    p.add_argument("--sign-key", type=Path, help="sign with this Ed25519 private key (PEM) before sending")
    p.add_argument("--dry-run", action="store_true", help="show the diff and lint findings; apply nothing")
    p.set_defaults(handler=_push)

    p = sub.add_parser("rollback", help="put an earlier policy version back in force on a meter")
    _remote_arguments(p)
    p.add_argument("--to", type=int, metavar="VERSION", help="version number (default: the one before)")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(handler=_rollback)

    p = sub.add_parser("sign", help="write a signed policy bundle")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--key", type=Path, required=True, help="Ed25519 private key (PEM)")
    p.add_argument("--out", type=Path, required=True, help="bundle file to write")
    p.set_defaults(handler=_sign)

    p = sub.add_parser("keygen", help="make an Ed25519 key pair for signing policy bundles")
    p.add_argument(
        "--out", type=Path, required=True, metavar="PREFIX", help="writes PREFIX.pem and PREFIX.pub.pem"
    )
    p.set_defaults(handler=_keygen)


def _remote_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=22)
    p.add_argument(
        "--user", default=os.environ.get("USER", "rbacmnt"), help="a meter user holding user_management"
    )
    p.add_argument("--identity", type=Path, help="SSH private key file")
    p.add_argument(
        "--ssh-option", action="append", default=[], metavar="OPTION", help="passed to ssh as -o OPTION"
    )


def _ssh(args: argparse.Namespace, command: list[str], payload: bytes) -> int:
    argv = ["ssh", "-p", str(args.port), "-o", "BatchMode=yes"]
    if args.identity:
        argv += ["-i", str(args.identity)]
    for option in args.ssh_option:
        argv += ["-o", option]
    argv += [f"{args.user}@{args.host}", "meterd-policy", *command]
    try:
        result = subprocess.run(argv, input=payload, capture_output=True, timeout=TIMEOUT, check=False)
    except FileNotFoundError:
        print("meterctl: the OpenSSH client `ssh` is not installed", file=sys.stderr)
        return EXIT_BAD_INPUT
    except subprocess.TimeoutExpired:
        print(f"meterctl: no answer from {args.host} within {TIMEOUT} s", file=sys.stderr)
        return EXIT_BAD_INPUT
    sys.stdout.write(result.stdout.decode(errors="replace"))
    sys.stderr.write(result.stderr.decode(errors="replace"))
    if result.returncode == SSH_FAILURE:
        print(f"meterctl: could not reach or log in to {args.host}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return min(result.returncode, EXIT_BAD_INPUT)


def _bundle_bytes(path: Path, sign_key: Path | None) -> bytes:
    raw = path.read_bytes()
    if raw.lstrip().startswith(b"{"):
        bundle = decode_bundle(raw)
        if sign_key is not None:
            bundle = Bundle(bundle.policy_text, sign(bundle.policy_text, sign_key.read_bytes()))
        return bundle.encode()
    text = raw.decode("utf-8")
    signature = sign(text, sign_key.read_bytes()) if sign_key is not None else None
    return Bundle(text, signature).encode()


def _push(args: argparse.Namespace) -> int:
    try:
        payload = _bundle_bytes(args.file, args.sign_key)
    except (OSError, UnicodeDecodeError, PolicyError) as e:
        print(f"meterctl: {args.file}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return _ssh(args, ["push", *(["--dry-run"] if args.dry_run else [])], payload)


def _rollback(args: argparse.Namespace) -> int:
    command = ["rollback", *(["--to", str(args.to)] if args.to is not None else [])]
    return _ssh(args, [*command, *(["--dry-run"] if args.dry_run else [])], b"")


def _sign(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text(encoding="utf-8")
        bundle = Bundle(text, sign(text, args.key.read_bytes()))
        args.out.write_bytes(bundle.encode())
    except (OSError, UnicodeDecodeError, PolicyError) as e:
        print(f"meterctl: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{args.out}: signed bundle of {args.file}")
    return EXIT_OK


def _keygen(args: argparse.Namespace) -> int:
    key = Ed25519PrivateKey.generate()
    private = Path(f"{args.out}.pem")
    public = Path(f"{args.out}.pub.pem")
    try:
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    except OSError as e:
        print(f"meterctl: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"{private}: private key (keep it with the configuration tool)\n{public}: public key (for the meters)"
    )
    return EXIT_OK
