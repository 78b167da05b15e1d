"""Modbus/TCP Security: the server's TLS context, checked at start, built at the first handshake.

Building an :class:`ssl.SSLContext` makes the process initialise OpenSSL's
TLS library and parse the meter's key, about 0.85 MiB of resident pages that
a meter no Modbus/TCP Security client ever connects to does not need.
:class:`ServerTls` therefore keeps only the SHA-256 of the three files at
start and builds the context when the first client connects.

Invariants:
    * A certificate, key or CA that :func:`server_context` refuses stops the
      start, with its message, before anything listens: the check runs the
      same function in a forked child, which exits right after, so the
      daemon's own process never loads the context.  If the child gives no
      answer (fork refused, a crash, no answer within ``CHECK_TIMEOUT``), the
      context is built in the daemon at start instead: the check is never
      skipped.
    * The context served is built from files whose digests are those checked
      at start; files changed since (or unreadable) fail closed: every TLS
      client is refused until meterd restarts.  The failure is kept: a flood
      of clients never makes meterd read or parse the files again.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import select
import signal
import ssl
import time
from typing import NoReturn

from meterd.channels.modbus.certificates import server_context
from meterd.channels.modbus.config import TlsConfig
from meterd.errors import ChannelError

log = logging.getLogger(__name__)

#: The largest certificate chain, key or CA bundle meterd reads.
MAX_FILE_SIZE = 1 << 20
#: Seconds the start-time check in a child may take before meterd builds the context itself.
CHECK_TIMEOUT = 10.0

_CANNOT_LOAD = "modbus: cannot load the TLS certificate, key or CA"
# The child's answer: _VALID, or _INVALID and the error's text.
_VALID = b"+"
_INVALID = b"-"
_MAX_ANSWER = 4096
_NO_ANSWER_EXIT = 70


def file_digests(tls: TlsConfig) -> tuple[bytes, ...]:
    """Return the SHA-256 of the certificate, key and CA files, each read whole.

    Raises:
        ChannelError: A path is not configured, or a file cannot be read or is
            larger than :data:`MAX_FILE_SIZE`.
    """
    if tls.cert is None or tls.key is None or tls.ca is None:
        raise ChannelError("modbus: Modbus/TCP Security needs tls.cert, tls.key and tls.ca")
    digests = []
    for path in (tls.cert, tls.key, tls.ca):
        try:
            with path.open("rb") as f:
                data = f.read(MAX_FILE_SIZE + 1)
        except OSError as e:
            raise ChannelError(f"{_CANNOT_LOAD}: {e}") from e
        if len(data) > MAX_FILE_SIZE:
            raise ChannelError(f"{_CANNOT_LOAD}: {path}: larger than {MAX_FILE_SIZE >> 20} MiB")
        digests.append(hashlib.sha256(data).digest())
    return tuple(digests)


class ServerTls:
    """The context of the Modbus/TCP Security listener: checked now, built at the first handshake.

    Args:
        tls: The ``[modbus.tls]`` settings (enabled).

    Raises:
        ChannelError: A file is missing, unreadable, too large or refused by
            :func:`server_context` (a bad certificate or CA, a key that does not
            match), or changed while it was checked.
    """

    def __init__(self, tls: TlsConfig) -> None:
        self._tls = tls
        self._digests = file_digests(tls)
        self._context: ssl.SSLContext | None = None
        self._failure: str | None = None
        answer = _check_in_child(tls, CHECK_TIMEOUT)
        if isinstance(answer, str):
            log.warning(
                "modbus: the TLS certificate, key and CA were not checked in a child process (%s); "
                "building the TLS context at start instead",
                answer,
            )
            self._context = server_context(tls)
        elif answer != _VALID:
            raise ChannelError(answer[1:].decode("utf-8", "replace"))
        # What was checked must be what the digests are of.
        if file_digests(tls) != self._digests:
            raise ChannelError(f"{_CANNOT_LOAD}: a file changed while meterd was checking it")

    @property
    def built(self) -> bool:
        """True once the context exists (at start only if the check in a child gave no answer)."""
        return self._context is not None

    def context(self) -> ssl.SSLContext:
        """Return the server's TLS context, built the first time from the files checked at start.

        Raises:
            ChannelError: The files changed since meterd started or cannot be read;
                every later call raises the same error without reading them again.
        """
        if self._context is not None:
            return self._context
        if self._failure is None:
            try:
                self._context = self._build()
            except ChannelError as e:
                self._failure = str(e)
                log.error("%s", self._failure)
            else:
                return self._context
        # A new exception per call: raising one instance again would grow its traceback per client.
        raise ChannelError(self._failure)

    def _build(self) -> ssl.SSLContext:
        self._check_unchanged()
        try:
            context = server_context(self._tls)
        except ChannelError as e:
            # These files loaded in the check at start: one changed between the two reads.
            raise ChannelError(_changed(str(e))) from e
        self._check_unchanged()  # what was loaded is what was checked
        return context

    def _check_unchanged(self) -> None:
        try:
            digests = file_digests(self._tls)
        except ChannelError as e:
            raise ChannelError(_changed(str(e))) from e
        if digests != self._digests:
            raise ChannelError(_changed(""))


def _changed(detail: str) -> str:
    why = f" ({detail.removeprefix('modbus: ')})" if detail else ""
    return (
        f"modbus: the TLS certificate, key or CA changed since meterd started{why}; "
        "every Modbus/TCP Security client is refused until a restart of meterd loads them"
    )


def _check_in_child(tls: TlsConfig, timeout: float) -> bytes | str:
    """Run :func:`server_context` in a forked child; its answer, or why it gave none.

    The daemon has threads (the security log's syncers, the default executor) when
    this runs: the child touches only the files, OpenSSL and the pipe, and never
    collects garbage, whose finalisers could wait for a lock a thread held at the fork.
    """
    try:
        reader, writer = os.pipe()
    except OSError as e:
        return f"no pipe: {e}"
    collect = gc.isenabled()
    gc.disable()
    try:
        pid = os.fork()
    except OSError as e:
        pid = -1
        why = f"cannot fork: {e}"
    if pid == 0:
        _child(writer, tls)
    if collect:
        gc.enable()
    os.close(writer)
    if pid < 0:
        os.close(reader)
        return why
    deadline = time.monotonic() + timeout
    answer: bytes | None = None
    try:
        answer = _read_answer(reader, deadline)
    finally:
        os.close(reader)
        code = _reap(pid, deadline)
    if code is None:
        return f"no answer within {timeout:g} s"
    if code != 0 or answer is None or not answer.startswith((_VALID, _INVALID)):
        return f"no answer, exit status {code}"
    return answer


def _child(writer: int, tls: TlsConfig) -> NoReturn:
    """Check ``tls`` as the server would load it, answer on ``writer``, and leave without cleaning up."""
    code = _NO_ANSWER_EXIT
    try:
        # The daemon's signal wake-up fd is shared with this child: a signal aimed at
        # the child alone must not reach the daemon's loop as if it were the daemon's.
        signal.set_wakeup_fd(-1)
        try:
            server_context(tls)
            answer = _VALID
        except ChannelError as e:
            answer = _INVALID + str(e).encode("utf-8", "replace")[: _MAX_ANSWER - 1]
        view = memoryview(answer)
        while view:
            view = view[os.write(writer, view) :]
        code = 0
    except BaseException:  # noqa: S110 - no answer: the parent checks in its own process
        pass
    # Neither atexit handlers nor the parent's buffers: this process only checked the files.
    os._exit(code)


def _read_answer(reader: int, deadline: float) -> bytes | None:
    """Read the child's whole answer (until it closes the pipe); None past the deadline or too long."""
    poller = select.poll()
    poller.register(reader, select.POLLIN)
    answer = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            return None
        chunk = os.read(reader, _MAX_ANSWER)
        if not chunk:
            return answer
        answer += chunk
        if len(answer) > _MAX_ANSWER:
            return None


def _reap(pid: int, deadline: float) -> int | None:
    """Wait for the child until the deadline; its exit code, or None once killed past the deadline."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.001)
