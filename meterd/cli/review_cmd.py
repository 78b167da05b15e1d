"""``meterctl policy review --log``, ``policy what-if`` and ``policy suggest``: access review from the log.

Each reads a log (a directory, a copied segment or an exported file), verifies
it in the same pass, and reports in ``table``, ``json``, ``csv`` or ``html``.
Nothing here changes the meter.  Exit codes: 0 ok, 1 a finding (review
findings, a loss of used access, a suggestion that changes access), 2 bad
input (no log, a log that does not verify, another meter's log, an invalid
policy, an empty window); errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from meterd.errors import ConfigError, MeterdError, PolicyError, PolicyValidationError
from meterd.policy.compile import compile_policy
from meterd.policy.diff import diff_policies
from meterd.policy.dump import dump_policy
from meterd.policy.files import read_policy_file, read_policy_text
from meterd.policy.model import Policy
from meterd.review.findings import DEFAULT_REFUSAL_THRESHOLD, review
from meterd.review.html import review_html, suggest_html, what_if_html
from meterd.review.render import (
    Data,
    review_csv,
    review_data,
    review_table,
    suggest_csv,
    suggest_data,
    suggest_table,
    to_json,
    what_if_csv,
    what_if_data,
    what_if_table,
)
from meterd.review.source import Progress, ReadLog, ReviewInputError, check_same_meter, read_log
from meterd.review.suggest import principals_from_log, suggest_policy
from meterd.review.whatif import what_if
from meterd.seclog.keys import parse_key

EXIT_OK, EXIT_FINDING, EXIT_BAD_INPUT = 0, 1, 2
FORMATS = ("table", "json", "csv", "html")


def _time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def add_log_options(parser: argparse.ArgumentParser, *, log_required: bool) -> None:
    """Add the options every log-reading command shares."""
    parser.add_argument(
        "--log", type=Path, required=log_required, metavar="DIR", help="log directory or exported copy"
    )
    parser.add_argument("--key-file", type=Path, help="the log's initial key (checks the MACs too)")
    parser.add_argument("--since", type=_time, help="window start (ISO 8601; naive = UTC)")
    parser.add_argument("--until", type=_time, help="window end, exclusive")
    parser.add_argument(
        "--allow-unverified", action="store_true", help="go on when the log does not verify (with a warning)"
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``what-if`` and ``suggest`` (``review`` gains its options in policy_cmd)."""
    p = sub.add_parser(
        "what-if", help="replay the log against a candidate policy (exit 1 if used access is lost)"
    )
    p.add_argument("candidate", type=Path, metavar="CANDIDATE")
    p.add_argument("--policy", type=Path, metavar="CURRENT", help="compare with this policy's replay")
    add_log_options(p, log_required=True)
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(handler=cmd_what_if)

    p = sub.add_parser("suggest", help="propose least-privilege roles from what the log shows was used")
    p.add_argument(
        "--policy",
        type=Path,
        metavar="CURRENT",
        help="the policy in force (without it: built-in roles only, proposed from scratch)",
    )
    add_log_options(p, log_required=True)
    p.add_argument("--out", type=Path, help="write the suggested policy to this new file")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(handler=cmd_suggest)


def _error(message: str) -> int:
    print(f"meterctl: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _policy(path: Path, what: str) -> Policy:
    try:
        return read_policy_file(path)
    except PolicyValidationError as e:
        raise ReviewInputError(f"{what} does not validate: {e.errors[0].render()}") from None
    except ConfigError as e:
        raise ReviewInputError(f"{what} does not validate: {e.render()}") from None


def _read(args: argparse.Namespace) -> ReadLog:
    key = None
    if args.key_file is not None:
        try:
            key = parse_key(Path(args.key_file).read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError, ValueError, MeterdError) as e:
            raise ReviewInputError(f"{args.key_file}: not a log key ({e})") from None
    read = read_log(
        args.log,
        key=key,
        since=args.since,
        until=args.until,
        go_on_unverified=args.allow_unverified,
        progress=Progress("reading", sys.stderr),
    )
    if read.warning:
        print(f"meterctl: {read.warning}", file=sys.stderr)
    return read


def _emit(data: Data, fmt: str, renderers: dict[str, Callable[[Data], str]]) -> None:
    text = to_json(data) if fmt == "json" else renderers[fmt](data)
    sys.stdout.write(text.rstrip("\n") + "\n")


def run_checked(body: Callable[[], int]) -> int:
    """Run a command body; bad input becomes one line on stderr and exit 2."""
    try:
        return body()
    except ReviewInputError as e:
        return _error(str(e))
    except PolicyError as e:
        return _error(e.render())


def cmd_review(args: argparse.Namespace) -> int:
    """The review with usage and findings; exit 1 when there are findings."""

    def body() -> int:
        policy = _policy(args.file, str(args.file))
        read = _read(args)
        check_same_meter(policy, read.usage)
        result = review(policy, read.usage, args.refusal_threshold)
        data = review_data(result, read)
        _emit(data, args.format, {"table": review_table, "csv": review_csv, "html": review_html})
        return EXIT_FINDING if result.findings else EXIT_OK

    return run_checked(body)


def what_if_summary(candidate: Policy, current: Policy | None, args: argparse.Namespace) -> tuple[Data, int]:
    """Replay the log named by ``args`` (see :func:`add_log_options`) against ``candidate``.

    Shared by ``policy what-if`` and ``policy push --dry-run --log``.

    Returns:
        The what-if data and its exit code (1 when anyone would lose used access).

    Raises:
        ReviewInputError: The log cannot be read, does not verify, or is another meter's.
    """
    read = _read(args)
    check_same_meter(current or candidate, read.usage)
    result = what_if(read.usage, compile_policy(candidate), compile_policy(current) if current else None)
    return what_if_data(result, read), EXIT_FINDING if result.loses_used_access else EXIT_OK


def emit_what_if(data: Data, fmt: str) -> None:
    """Print what-if data in ``fmt`` (one of :data:`FORMATS`)."""
    _emit(data, fmt, {"table": what_if_table, "csv": what_if_csv, "html": what_if_html})


def candidate_policy(text: str, name: str) -> Policy:
    """Load a candidate policy from its text (one that does not validate: :class:`ReviewInputError`)."""
    try:
        return read_policy_text(text, name)
    except PolicyValidationError as e:
        raise ReviewInputError(f"{name} does not validate: {e.errors[0].render()}") from None
    except ConfigError as e:
        raise ReviewInputError(f"{name} does not validate: {e.render()}") from None


def cmd_what_if(args: argparse.Namespace) -> int:
    """Replay against the candidate; exit 1 when anyone would lose used access."""

    def body() -> int:
        candidate = _policy(args.candidate, f"candidate {args.candidate}")
        current = _policy(args.policy, f"current policy {args.policy}") if args.policy else None
        data, code = what_if_summary(candidate, current, args)
        emit_what_if(data, args.format)
        return code

    return run_checked(body)


def cmd_suggest(args: argparse.Namespace) -> int:
    """Propose roles; print the diff in ``policy diff`` format; exit 1 when access would change."""

    def body() -> int:
        read = _read(args)
        if args.policy is not None:
            policy = _policy(args.policy, f"policy {args.policy}")
            check_same_meter(policy, read.usage)
        else:
            # The log names who changed the policy, never its text: start from the built-in roles.
            policy = principals_from_log(read_policy_text("", "built-in roles"), read.usage)
        suggested, suggestions = suggest_policy(policy, read.usage)
        text = dump_policy(suggested)
        # Round trip through the loader: the suggestion must be a policy the meter would accept.
        suggested = read_policy_text(text, "suggested policy")
        changes = diff_policies(policy, suggested)
        if args.out is not None:
            try:
                with open(args.out, "x", encoding="utf-8") as f:
                    f.write(text)
            except OSError as e:
                raise ReviewInputError(f"{args.out}: {e.strerror}") from None
        data = suggest_data(suggestions, changes, read, baseline="policy" if args.policy else "builtin")
        _emit(data, args.format, {"table": suggest_table, "csv": suggest_csv, "html": suggest_html})
        # Without the policy in force every grant is new: nothing says access would change.
        return EXIT_FINDING if changes and args.policy is not None else EXIT_OK

    return run_checked(body)


def add_review_options(parser: argparse.ArgumentParser) -> None:
    """Give ``policy review`` its log options (without ``--log`` it reviews the policy alone)."""
    add_log_options(parser, log_required=False)
    parser.add_argument(
        "--refusal-threshold",
        type=int,
        default=DEFAULT_REFUSAL_THRESHOLD,
        help="refusals of the same permission that make a finding (default %(default)s)",
    )
