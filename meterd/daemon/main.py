"""``meterd --config PATH``: run the daemon in the foreground.

Exit codes: 0 after a clean stop, 1 if start-up failed (a channel could not
start), 2 for a bad configuration or policy.  Every failure is one clear line
on standard error before anything listens.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from meterd import __version__
from meterd.config import read_config
from meterd.daemon.app import Daemon, StartupError
from meterd.errors import ConfigError, MeterdError


def main(argv: Sequence[str] | None = None) -> int:
    """Run meterd; return its exit code."""
    parser = argparse.ArgumentParser(prog="meterd", description="Access-control daemon of the meter.")
    parser.add_argument("--config", required=True, type=Path, help="path of meterd.toml")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--version", action="version", version=f"meterd {__version__}")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="meterd: %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = read_config(args.config)
        return asyncio.run(Daemon(config).run())
    except ConfigError as e:
        print(f"meterd: {e.render()}", file=sys.stderr)
        return 2
    except StartupError as e:
        print(f"meterd: cannot start: {e}", file=sys.stderr)
        return 1
    except MeterdError as e:
        print(f"meterd: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
