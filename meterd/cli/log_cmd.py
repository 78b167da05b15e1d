"""``meterctl log``: init, verify, show and export the security log.

Every command works on a log directory given with ``--dir``: the live one
(file permissions protect it: 0700 directory, 0600 files) or an exported copy;
``verify``, ``show`` and ``export`` also accept a single file (a copied segment,
the output of ``export``, or a collector's file).  Exit codes: 0 ok, 1 a
finding, 2 bad usage or input; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from meterd.errors import MeterdError
from meterd.policy.request import Outcome
from meterd.review.source import Progress
from meterd.seclog.codec import FrameError, decode_frame
from meterd.seclog.events import BY_EVENT_NAME, BY_OUTCOME_NAME, Record
from meterd.seclog.keys import parse_key
from meterd.seclog.log import SecurityLog
from meterd.seclog.parts import cpu_count
from meterd.seclog.reader import Query, iter_lines, read_records
from meterd.seclog.syslog import clean_hostname, local_hostname, to_syslog
from meterd.seclog.verify import load_anchor, verify

OK, FINDING, BAD_INPUT = 0, 1, 2


def _error(message: str) -> int:
    print(f"meterctl log: {message}", file=sys.stderr)
    return BAD_INPUT


def _time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def _source(args: argparse.Namespace) -> Path | None:
    source: Path = args.dir
    return source if source.exists() else None


def cmd_init(args: argparse.Namespace) -> int:
    """Create a log and hand out its initial key (stdout, or ``--key-out`` written 0600)."""
    try:
        key = SecurityLog.init(args.dir).hex()
    except FileExistsError as e:
        return _error(str(e))
    except (OSError, MeterdError) as e:
        return _error(f"{args.dir}: cannot create the log: {e}")
    if args.key_out is None:
        print(key)
    else:
        try:
            fd = os.open(args.key_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            print(key)  # the log exists now: the key must not be lost
            return _error(f"{args.key_out}: {e.strerror}; the key was printed instead")
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
    print("keep this key off the meter: it verifies every record ever written", file=sys.stderr)
    return OK


def _read_key(args: argparse.Namespace) -> bytes | None:
    text = args.key
    if args.key_file is not None:
        text = Path(args.key_file).read_text(encoding="ascii")
    return parse_key(text) if text else None


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify chain, order, MACs, checkpoints and agreement with a trusted copy; name the first bad seq."""
    source = _source(args)
    if source is None:
        return _error(f"{args.dir}: no such log")
    try:
        key = _read_key(args)
        anchor = None
        if args.from_checkpoint is not None:
            anchor = load_anchor(Path(args.from_checkpoint), key)
    except (OSError, ValueError, MeterdError) as e:
        return _error(str(e))
    progress = Progress("verified", sys.stderr)
    try:
        report = verify(source, key=key, anchor=anchor, workers=cpu_count(), progress=progress.update)
    finally:
        progress.done()
    if args.json:
        finding = report.finding
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "records": report.records,
                    "first_seq": report.first_seq,
                    "last_seq": report.last_seq,
                    "mac_checked": report.mac_checked,
                    "checkpoints": report.checkpoints,
                    "anchored": report.anchored,
                    "finding": None
                    if finding is None
                    else {
                        "seq": finding.seq,
                        "problem": finding.problem.value,
                        "message": finding.message,
                        "location": finding.location,
                    },
                }
            )
        )
    elif report.finding is not None:
        f = report.finding
        where = f" ({f.location})" if f.location else ""
        print(f"seq {f.seq}: {f.problem.value}: {f.message}{where}", file=sys.stderr)
    else:
        macs = "MACs checked" if report.mac_checked else "MACs NOT checked (no --key)"
        agrees = f", agrees with the copy up to its record {anchor.seq}" if anchor is not None else ""
        print(
            f"intact: records {report.first_seq}..{report.last_seq} ({report.records}), {macs}, "
            f"{report.checkpoints} checkpoints{agrees}"
        )
    return OK if report.ok else FINDING


def _query(args: argparse.Namespace) -> Query:
    return Query(
        since=args.since,
        until=args.until,
        principals=frozenset(args.principal or ()),
        events=frozenset(BY_EVENT_NAME[e] for e in args.event or ()),
        outcomes=frozenset(BY_OUTCOME_NAME[o] for o in args.outcome or ()),
        limit=args.limit,
    )


def _row(record: Record) -> str:
    detail = " ".join(f"{k}={v}" for k, v in record.detail.items())
    return (
        f"{record.seq:>8} {record.time} {record.event.value:<20} {record.outcome.value:<5} "
        f"{record.principal}({record.principal_kind.value}) {record.channel.value} "
        f"{record.source or '-'} {record.permission or '-'} {record.resource or '-'} {detail}"
    ).rstrip()


def cmd_show(args: argparse.Namespace) -> int:
    """Print records matching the filters, as a table or ``--json``."""
    source = _source(args)
    if source is None:
        return _error(f"{args.dir}: no such log")
    try:
        records = read_records(source, _query(args))
    except OSError as e:
        return _error(f"{args.dir}: {e.strerror}")
    if args.json:
        print(json.dumps([r.to_json() for r in records], indent=1))
    else:
        for record in records:
            print(_row(record))
    return OK


def cmd_export(args: argparse.Namespace) -> int:
    """Write records as RFC 5424 lines (frames byte for byte) to stdout or ``--out``."""
    source = _source(args)
    if source is None:
        return _error(f"{args.dir}: no such log")
    hostname = clean_hostname(args.hostname) if args.hostname else local_hostname()
    query = _query(args)
    try:
        out = open(args.out, "xb") if args.out else sys.stdout.buffer  # noqa: SIM115 - closed below
    except OSError as e:
        return _error(f"{args.out}: {e.strerror}")
    try:
        for line in iter_lines(source):
            if not line.complete:
                continue
            try:
                message = to_syslog(line.data, hostname)
            except FrameError:
                continue  # damaged lines are verify's business, not export's
            if args.from_seq or query != Query():
                record = decode_frame(line.data).record
                if record.seq < args.from_seq or not query.filter([record]):
                    continue
            out.write(message + b"\n")
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    return OK


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=_time, help="records at or after this time (ISO 8601; naive = UTC)")
    parser.add_argument("--until", type=_time, help="records before this time")
    parser.add_argument("--principal", action="append", help="only this principal (repeatable)")
    parser.add_argument(
        "--event", action="append", choices=sorted(BY_EVENT_NAME), help="only this event type"
    )
    parser.add_argument(
        "--outcome", action="append", choices=[o.value for o in Outcome], help="only this outcome"
    )
    parser.add_argument("--limit", type=int, default=0, help="only the newest N records")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``log`` and its sub-commands; each sets ``handler`` returning an exit code."""
    log = subparsers.add_parser("log", help="the security log: init, verify, show, export")
    commands = log.add_subparsers(dest="log_command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--dir", type=Path, required=True, help="log directory (or exported file)")
        return parser

    init = command("init", "create a security log and print its initial key (once)")
    init.add_argument("--key-out", help="write the key to this new file (0600) instead of stdout")
    init.set_defaults(handler=cmd_init)

    check = command("verify", "check chain, order, MACs and checkpoints; exit 1 on the first problem")
    check.add_argument("--key", help="the initial key from 'log init' (64 hex digits)")
    check.add_argument("--key-file", help="read the initial key from this file")
    check.add_argument(
        "--from-checkpoint",
        metavar="COPY",
        help="a trusted copy (an export, a collector's file, a checkpoint record): the log must hold "
        "the copy's records unchanged, up to its newest (the oldest may have been dropped in rotation)",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=cmd_verify)

    show = command("show", "print records, filtered")
    _add_filters(show)
    show.add_argument("--json", action="store_true", help="print a JSON array")
    show.set_defaults(handler=cmd_show)

    export = command("export", "write records as RFC 5424 syslog lines")
    _add_filters(export)
    export.add_argument("--from-seq", type=int, default=0, help="start at this sequence number")
    export.add_argument("--hostname", help="HOSTNAME field (default: this host)")
    export.add_argument("--out", help="write to this new file instead of stdout")
    export.set_defaults(handler=cmd_export)
