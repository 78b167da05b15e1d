"""Store-and-forward of the security log to a syslog collector (RFC 5424 over TCP or TLS).

The forwarder reads the segments (never the writer's memory), sends every
record after its cursor in order, and moves the cursor only once the collector
has confirmed reading the whole batch.  The cursor is ``<log dir>/exported``,
rewritten atomically, so it survives restarts, and the log's default full
policy drops only segments behind it.

Delivery confirmation: syslog over TCP/TLS has no application acknowledgement,
so each batch uses its own connection, which the forwarder half-closes after
the last message (TCP ``FIN``; for TLS a ``close_notify`` first).  A collector
closes its side only after reading up to our end of stream, so an orderly
close by the peer confirms that every byte was read; a reset, a timeout or a
refused connection does not, and the whole batch is sent again later.
Consequences, stated honestly: nothing is lost, order is kept, and a record
is sent twice only if the collector dies between reading our last byte and
closing, a window of microseconds; each message carries its seq, so the
receiving side can always discard such a repeat.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import field
from pathlib import Path

from meterd.record import record
from meterd.seclog.codec import FrameError, decode_frame
from meterd.seclog.segments import last_line, list_segments, read_exported, read_lines, write_exported
from meterd.seclog.syslog import local_hostname, octet_counted, to_syslog

_log = logging.getLogger(__name__)


@record
class CollectorConfig:
    """Where and how to send.

    Attributes:
        host: Collector address.
        port: Collector port (514 for TCP, 6514 for TLS by convention).
        tls: Client context for RFC 5425; None sends plain TCP.
        server_hostname: Name checked against the collector's certificate (default: ``host``).
        hostname: The ``HOSTNAME`` field of every message.
        batch_records: Most records sent per connection.
        timeout: Seconds for connect, send and the collector's close.
        retry_min: First delay after a failure; doubles up to ``retry_max``.
        retry_max: Longest delay between attempts.
        poll_interval: Seconds between looks for new records when idle.
    """

    host: str
    port: int
    tls: ssl.SSLContext | None = None
    server_hostname: str | None = None
    hostname: str = field(default_factory=local_hostname)
    batch_records: int = 500
    timeout: float = 10.0
    retry_min: float = 0.2
    retry_max: float = 30.0
    poll_interval: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError("port must be between 1 and 65535")
        if not 1 <= self.batch_records <= 100_000:
            raise ValueError("batch_records must be between 1 and 100000")


class Forwarder:
    """Sends a log directory's records to a collector, in order, each once.

    Args:
        directory: The log directory.
        collector: Where to send.
        durable_seq: Returns the highest seq known durable (e.g.
            ``SecurityLog.head_seq``); records beyond it are not sent yet, so a
            record lost in a crash is never forwarded.  None: every complete frame.
    """

    def __init__(
        self, directory: Path, collector: CollectorConfig, durable_seq: Callable[[], int] | None = None
    ) -> None:
        self.directory = directory
        self.collector = collector
        self._durable_seq = durable_seq
        self.cursor = read_exported(directory)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str = ""

    # -- reading ----------------------------------------------------------

    def pending(self, limit: int) -> list[tuple[int, bytes]]:
        """Return up to ``limit`` ``(seq, frame line)`` after the cursor, oldest first."""
        ceiling = self._durable_seq() if self._durable_seq else None
        out: list[tuple[int, bytes]] = []
        for _, path in list_segments(self.directory):
            try:
                tail = decode_frame(last_line(path)).record.seq
            except (FrameError, OSError):
                tail = None
            if tail is not None and tail <= self.cursor:
                continue  # wholly sent already
            for line in read_lines(path):
                if not line.complete:
                    break
                try:
                    seq = decode_frame(line.data).record.seq
                except FrameError:
                    break  # a damaged frame: stop here rather than skip evidence
                if seq <= self.cursor:
                    continue
                if (ceiling is not None and seq > ceiling) or len(out) >= limit:
                    return out
                out.append((seq, line.data))
        return out

    # -- sending ----------------------------------------------------------

    def _connect(self) -> socket.socket:
        c = self.collector
        raw = socket.create_connection((c.host, c.port), timeout=c.timeout)
        if c.tls is None:
            return raw
        try:
            return c.tls.wrap_socket(raw, server_hostname=c.server_hostname or c.host)
        except BaseException:
            raw.close()
            raise

    def _send_batch(self, batch: list[tuple[int, bytes]]) -> None:
        """Send one batch on its own connection and wait for the collector's orderly close.

        Raises:
            OSError: Not confirmed (connection refused, reset, timeout, TLS failure).
        """
        payload = b"".join(octet_counted(to_syslog(line, self.collector.hostname)) for _, line in batch)
        sock = self._connect()
        try:
            sock.sendall(payload)
            if isinstance(sock, ssl.SSLSocket):
                try:
                    sock = sock.unwrap()  # close_notify, then the peer's close
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return  # the peer closed after reading our close_notify
            sock.shutdown(socket.SHUT_WR)
            while True:
                data = sock.recv(4096)
                if not data:
                    return
        finally:
            sock.close()

    def send_pending(self) -> int:
        """Send everything pending now; return how many records were confirmed.

        Raises:
            OSError: A batch was not confirmed; the cursor stays before it.
        """
        sent = 0
        while batch := self.pending(self.collector.batch_records):
            self._send_batch(batch)
            self.cursor = batch[-1][0]
            write_exported(self.directory, self.cursor)
            sent += len(batch)
        return sent

    # -- the thread -------------------------------------------------------

    def start(self) -> None:
        """Start forwarding in a background thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="seclog-forwarder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = self.collector.retry_min
        while not self._stop.is_set():
            try:
                self.send_pending()
            except (OSError, ValueError) as e:
                self.last_error = str(e) or type(e).__name__
                _log.warning(
                    "security log forwarding to %s:%d failed: %s; retrying in %.1f s",
                    self.collector.host,
                    self.collector.port,
                    self.last_error,
                    delay,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, self.collector.retry_max)
                continue
            delay = self.collector.retry_min
            self._stop.wait(self.collector.poll_interval)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the thread (a batch in flight is finished or abandoned, never half-counted)."""
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(RuntimeError):
                self._thread.join(timeout)
            self._thread = None
