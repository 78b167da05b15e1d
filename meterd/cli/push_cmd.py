"""``meterctl policy push|rollback|keygen``: the configuration tool's side of a policy push.

``sign`` lives in :mod:`meterd.cli.sign_cmd`.

The transport is the operator's own OpenSSH client (their keys, agent and
known_hosts apply): ``ssh -p PORT USER@HOST meterd-policy push`` with the
bundle on standard input.  The meter validates, lints and applies; this side
only packages, signs and reports.  ``ssh`` runs in batch mode (a host-key or
password prompt would hang a script), so the meter's host key must be known:
from the operator's known_hosts, or pinned with ``--host-key`` (the meter's
``ssh_host_ed25519_key.pub``), which accepts that key and no other.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from meterd.cli import review_cmd, sign_cmd
from meterd.errors import ConfigError, PolicyError
from meterd.policy.bundle import Bundle, sign
from meterd.policy.keys import check_authorized_key
from meterd.policy.signed import SignedBundle, decode_any, key_id
from meterd.review.render import Data

EXIT_OK, EXIT_FINDING, EXIT_BAD_INPUT = 0, 1, 2
SSH_FAILURE = 255
TIMEOUT = 120
HOST_KEY_ALIAS = "meterd-pinned-host-key"


def add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add push, rollback, sign and keygen to ``meterctl policy``."""
    p = sub.add_parser("push", help="send a policy (or a signed bundle) to a meter over SSH")
    p.add_argument("file", type=Path, metavar="FILE", help="policy.toml, or a bundle from `policy sign`")
    _remote_arguments(p)
    p.add_argument("--sign-key", type=Path, help="sign with this Ed25519 private key (PEM) before sending")
    p.add_argument("--dry-run", action="store_true", help="show the diff and lint findings; apply nothing")
    review_cmd.add_log_options(p, log_required=False)
    p.set_defaults(handler=_push)

    p = sub.add_parser("rollback", help="put an earlier policy version back in force on a meter")
    _remote_arguments(p)
    p.add_argument("--to", type=int, metavar="VERSION", help="version number (default: the one before)")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(handler=_rollback)

    sign_cmd.add_subcommand(sub)

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
        "--host-key",
        type=Path,
        metavar="FILE",
        help="accept only this host key (the meter's ssh_host_ed25519_key.pub) instead of known_hosts",
    )
    p.add_argument(
        "--ssh-option", action="append", default=[], metavar="OPTION", help="passed to ssh as -o OPTION"
    )


def _pinned_host_key(host_key: Path, directory: Path) -> list[str]:
    """Return the ssh options that accept ``host_key`` (an OpenSSH public key file) and nothing else.

    Raises:
        ConfigError: The file is unreadable or holds no SSH public key.
    """
    try:
        line = host_key.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the host key: {e}", source=str(host_key)) from e
    problem = check_authorized_key(line) if line else "is empty"
    if problem:
        raise ConfigError(f"not an SSH public key: {problem}", source=str(host_key))
    key_type, blob = line.split()[:2]
    # The alias names the key in this file whatever host and port the command line uses.
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"{HOST_KEY_ALIAS} {key_type} {blob}\n", encoding="utf-8")
    options = (
        f"UserKnownHostsFile={known_hosts}",
        "GlobalKnownHostsFile=/dev/null",
        f"HostKeyAlias={HOST_KEY_ALIAS}",
        "StrictHostKeyChecking=yes",
    )
    return [arg for option in options for arg in ("-o", option)]


def _ssh(args: argparse.Namespace, command: list[str], payload: bytes) -> int:
    with tempfile.TemporaryDirectory(prefix="meterctl-") as scratch:
        argv = ["ssh", "-p", str(args.port), "-o", "BatchMode=yes"]
        if args.identity:
            argv += ["-i", str(args.identity)]
        if args.host_key:
            try:
                argv += _pinned_host_key(args.host_key, Path(scratch))
            except ConfigError as e:
                print(f"meterctl: {e.render()}", file=sys.stderr)
                return EXIT_BAD_INPUT
        for option in args.ssh_option:
            argv += ["-o", option]
        argv += [f"{args.user}@{args.host}", "meterd-policy", *command]
        return _run_ssh(args, argv, payload)


def _run_ssh(args: argparse.Namespace, argv: list[str], payload: bytes) -> int:
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
        found = decode_any(raw)
        if isinstance(found, SignedBundle):
            if sign_key is not None:
                raise PolicyError(
                    "a format 2 bundle is signed with `policy sign`, not --sign-key", source="push"
                )
            return raw
        bundle = found
        if sign_key is not None:
            bundle = Bundle(bundle.policy_text, sign(bundle.policy_text, sign_key.read_bytes()))
        return bundle.encode()
    text = raw.decode("utf-8")
    signature = sign(text, sign_key.read_bytes()) if sign_key is not None else None
    return Bundle(text, signature).encode()


def _push(args: argparse.Namespace) -> int:
    if args.log is not None and not args.dry_run:
        print("meterctl: --log replays the log for a dry run only: add --dry-run", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        payload = _bundle_bytes(args.file, args.sign_key)
    except (OSError, UnicodeDecodeError, PolicyError) as e:
        print(f"meterctl: {args.file}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.log is None:
        return _ssh(args, ["push", *(["--dry-run"] if args.dry_run else [])], payload)
    # The replay is local and read-only; it runs first so bad input never reaches the meter.
    summary: list[tuple[Data, int]] = []

    def replay() -> int:
        text = decode_any(payload).policy_text
        candidate = review_cmd.candidate_policy(text, f"candidate {args.file}")
        summary.append(review_cmd.what_if_summary(candidate, None, args))
        return EXIT_OK

    if review_cmd.run_checked(replay) != EXIT_OK:
        return EXIT_BAD_INPUT
    code = _ssh(args, ["push", "--dry-run"], payload)
    data, what_if_code = summary[0]
    sys.stdout.write(f"\nwhat-if: the candidate replayed against the log copy {args.log}\n")
    sys.stdout.flush()
    review_cmd.emit_what_if(data, "table")
    return code if code == EXIT_BAD_INPUT else max(code, what_if_code)


def _rollback(args: argparse.Namespace) -> int:
    command = ["rollback", *(["--to", str(args.to)] if args.to is not None else [])]
    return _ssh(args, [*command, *(["--dry-run"] if args.dry_run else [])], b"")


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
        f"\nkey id {key_id(key.public_key())}"
    )
    return EXIT_OK
