"""``meterctl``: the operator's tool.

Exit codes: 0 ok, 1 a finding or a denial, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from meterd import __version__
from meterd.cli import log_cmd, policy_cmd, user_cmd
from meterd.errors import MeterdError

EXIT_OK = 0
EXIT_FINDING = 1
EXIT_BAD_INPUT = 2

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """Return the full argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(prog="meterctl", description="Operate and audit a meterd meter.")
    parser.add_argument("--version", action="version", version=f"meterctl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    policy_cmd.register(commands)
    log_cmd.register(commands)
    user_cmd.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run meterctl; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except MeterdError as e:
        print(f"meterctl: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # The reader went away (``| head``): what it wanted was printed; say nothing more,
        # and keep the interpreter's final flush from failing on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
