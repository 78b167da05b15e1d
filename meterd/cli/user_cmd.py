"""``meterctl user``: credential tools."""

from __future__ import annotations

import argparse
import getpass
import sys

from meterd.credentials import hash_secret, password_problems
from meterd.policy.model import PasswordRules

EXIT_OK, EXIT_BAD_INPUT = 0, 2
PIN_LENGTHS = range(6, 13)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``user`` command and its sub-commands."""
    user = commands.add_parser("user", help="credential tools")
    sub = user.add_subparsers(dest="user_command", required=True, metavar="SUBCOMMAND")
    p = sub.add_parser("hash-password", help="print a password (or panel PIN) hash for policy.toml")
    p.add_argument(
        "--stdin", action="store_true", help="read the secret from the first line of standard input"
    )
    p.add_argument("--pin", action="store_true", help="hash a front-panel PIN (6 to 12 digits)")
    p.set_defaults(handler=_hash_password)


def _read_secret(args: argparse.Namespace, what: str) -> str | None:
    if args.stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"New {what}: ")
    if getpass.getpass(f"Repeat {what}: ") != first:
        print(f"meterctl: the two {what}s differ", file=sys.stderr)
        return None
    return first


def _hash_password(args: argparse.Namespace) -> int:
    what = "PIN" if args.pin else "password"
    secret = _read_secret(args, what)
    if secret is None:
        return EXIT_BAD_INPUT
    if args.pin:
        problems = [] if secret.isdigit() and len(secret) in PIN_LENGTHS else ["must be 6 to 12 digits"]
    else:
        rules = PasswordRules()
        problems = password_problems(secret, rules.min_length, rules.min_character_classes)
    if problems:
        print(f"meterctl: the {what} {'; '.join(problems)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(hash_secret(secret))
    return EXIT_OK
