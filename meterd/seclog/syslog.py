"""RFC 5424 rendering of records, for ``meterctl log export`` and the forwarder.

One record becomes one message::

    <PRI>1 TIMESTAMP HOSTNAME meterd - EVENT [meterd@50316 seq="N" ch="CH" out="OUT"] FRAME

* Facility 13 (log audit); severity from the outcome: allow → informational,
  deny → warning, error → error.
* ``TIMESTAMP`` is the record's own time; ``MSGID`` its event type.
* ``MSG`` is the record's stored frame, byte for byte (ASCII), so a copy kept
  by any collector can be verified like the log itself.  Structured data holds
  only fixed vocabulary, never free text, so the frame is the first ``{`` of
  the line (see :func:`meterd.seclog.codec.find_frame`).

Over TCP and TLS (RFC 6587 octet counting, RFC 5425) each message is sent as
``LEN SP MESSAGE``.
"""

from __future__ import annotations

import re
import socket

from meterd.policy.request import Outcome
from meterd.seclog.codec import decode_frame

FACILITY_LOG_AUDIT = 13
#: Private enterprise number used for meterd's structured data and certificate extensions.
ENTERPRISE = 50316
_SEVERITY = {Outcome.ALLOW: 6, Outcome.DENY: 4, Outcome.ERROR: 3}
_HOST_CHARS = re.compile(r"[^A-Za-z0-9.\-_:]")


def local_hostname() -> str:
    """Return this host's name in RFC 5424 ``HOSTNAME`` form."""
    return clean_hostname(socket.gethostname())


def clean_hostname(name: str) -> str:
    """Return ``name`` restricted to printable, space-free ASCII (``-`` if empty)."""
    return _HOST_CHARS.sub("_", name)[:255] or "-"


def to_syslog(frame_line: bytes, hostname: str) -> bytes:
    """Return the RFC 5424 message (no trailing newline) for one stored frame line.

    Raises:
        meterd.seclog.codec.FrameError: ``frame_line`` is not a valid frame.
    """
    frame = frame_line.rstrip(b"\n")
    record = decode_frame(frame).record
    pri = FACILITY_LOG_AUDIT * 8 + _SEVERITY[record.outcome]
    header = (
        f"<{pri}>1 {record.time} {hostname} meterd - {record.event.value} "
        f'[meterd@{ENTERPRISE} seq="{record.seq}" ch="{record.channel.value}" '
        f'out="{record.outcome.value}"] '
    )
    return header.encode("ascii") + frame


def octet_counted(message: bytes) -> bytes:
    """Return ``message`` framed for a TCP/TLS syslog stream (``LEN SP MSG``)."""
    return b"%d %s" % (len(message), message)
