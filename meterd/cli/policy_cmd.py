"""``meterctl policy``: validate, lint, explain, review and diff policy files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from meterd.cli import push_cmd, review_cmd
from meterd.config import read_config
from meterd.errors import ConfigError, PolicyError, PolicyValidationError
from meterd.policy.compile import compile_policy
from meterd.policy.credentials import Credentials, decode_store, lint_credentials, seed
from meterd.policy.diff import diff_policies
from meterd.policy.explain import explain
from meterd.policy.files import read_policy_file
from meterd.policy.lint import Severity, lint_directory, lint_policy
from meterd.policy.model import Policy
from meterd.policy.permissions import BY_ID
from meterd.policy.request import Channel
from meterd.policy.review import render_csv, render_json, render_table, review_rows
from meterd.tomlreader import suggest

EXIT_OK, EXIT_FINDING, EXIT_BAD_INPUT = 0, 1, 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``policy`` command and its sub-commands."""
    policy = commands.add_parser("policy", help="check, explain and compare policy files")
    sub = policy.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("validate", help="check that policy files load (syntax, keys, references)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.set_defaults(handler=_validate)

    p = sub.add_parser("lint", help="check least privilege and separation of duties")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument(
        "--credentials",
        type=Path,
        metavar="STORE",
        help="a meter's credential store (credentials.json): also report enabled users who would have "
        "no credential on that meter (a push dry run reports them too)",
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="METERD_TOML",
        help="the meter's meterd.toml: with a [directory] section, also require a break-glass account",
    )
    p.set_defaults(handler=_lint)

    p = sub.add_parser("explain", help="say whether a request is allowed and why")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--user", required=True, help="user or application name, or anonymous")
    p.add_argument("--permission", required=True)
    p.add_argument("--resource", default="/")
    p.add_argument("--channel", default="local", choices=[c.value for c in Channel])
    p.set_defaults(handler=_explain)

    p = sub.add_parser(
        "review",
        help="every principal and permission, where it comes from and, with --log, its use and findings",
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--format", choices=review_cmd.FORMATS, default="table", help="html needs --log")
    review_cmd.add_review_options(p)
    p.set_defaults(handler=_review)

    p = sub.add_parser("diff", help="who gains and who loses which permission (exit 1 if any)")
    p.add_argument("old", type=Path, metavar="OLD")
    p.add_argument("new", type=Path, metavar="NEW")
    p.set_defaults(handler=_diff)

    review_cmd.register(sub)
    push_cmd.add_subcommands(sub)


def _load(path: Path) -> Policy | None:
    """Load a policy, printing every error; ``None`` if it is invalid."""
    try:
        return read_policy_file(path)
    except PolicyValidationError as e:
        for error in e.errors:
            print(f"error: {error.render()}", file=sys.stderr)
    except PolicyError as e:
        print(f"error: {e.render()}", file=sys.stderr)
    return None


def _validate(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for path in args.files:
        if _load(path) is None:
            status = EXIT_BAD_INPUT
        else:
            print(f"{path}: valid")
    return status


def _read_store(path: Path) -> Credentials | None:
    try:
        return decode_store(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        print(f"error: {path}: cannot read: {e}", file=sys.stderr)
    except ConfigError as e:
        print(f"error: {path}: {e.render()}", file=sys.stderr)
    return None


def _directory_configured(path: Path | None) -> bool | None:
    """Whether the meterd.toml at ``path`` configures directory login (None: it is unusable)."""
    if path is None:
        return False
    try:
        return read_config(path).directory is not None
    except ConfigError as e:
        print(f"error: {e.render()}", file=sys.stderr)
        return None


def _lint(args: argparse.Namespace) -> int:
    status = EXIT_OK
    directory = _directory_configured(args.config)
    if directory is None:
        return EXIT_BAD_INPUT
    known = None
    if args.credentials is not None:
        known = _read_store(args.credentials)
        if known is None:
            return EXIT_BAD_INPUT
    for path in args.files:
        policy = _load(path)
        if policy is None:
            status = EXIT_BAD_INPUT
            continue
        findings = lint_policy(policy)
        if directory:
            findings += lint_directory(policy)
        if known is not None:
            findings += lint_credentials(policy, seed(known, policy))
        for finding in findings:
            print(f"{path}: {finding.render()}")
        errors = sum(f.severity is Severity.ERROR for f in findings)
        if findings:
            status = max(status, EXIT_FINDING)
        print(f"{path}: {errors} error(s), {len(findings) - errors} warning(s)")
    return status


def _explain(args: argparse.Namespace) -> int:
    permission = BY_ID.get(args.permission)
    if permission is None:
        hint = suggest(args.permission, BY_ID)
        print(
            f'meterctl: unknown permission "{args.permission}"'
            + (f'; did you mean "{hint}"?' if hint else ""),
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    policy = _load(args.file)
    if policy is None:
        return EXIT_BAD_INPUT
    result = explain(compile_policy(policy), args.user, permission, args.resource, Channel(args.channel))
    for line in result.reasons:
        print(line)
    return EXIT_OK if result.allowed else EXIT_FINDING


def _review(args: argparse.Namespace) -> int:
    if args.log is not None:
        return review_cmd.cmd_review(args)
    if args.format == "html":
        print("meterctl: --format html needs --log (the report shows use)", file=sys.stderr)
        return EXIT_BAD_INPUT
    policy = _load(args.file)
    if policy is None:
        return EXIT_BAD_INPUT
    render = {"table": render_table, "csv": render_csv, "json": render_json}[args.format]
    sys.stdout.write(render(review_rows(policy)).rstrip("\n") + "\n")
    return EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    old, new = _load(args.old), _load(args.new)
    if old is None or new is None:
        return EXIT_BAD_INPUT
    changes = diff_policies(old, new)
    for change in changes:
        print(change.render())
    gained = sum(c.gained for c in changes)
    print(f"{gained} gained, {len(changes) - gained} lost")
    return EXIT_FINDING if changes else EXIT_OK
