"""Modbus/TCP Security: the server's TLS context, checked at start, built at the first handshake.

Building an :class:`ssl.SSLContext` makes the process initialise OpenSSL's
TLS library and parse the meter's key, about 0.85 MiB of resident pages that
a meter no Modbus/TCP Security client ever connects to does not need.
:class:`ServerTls` therefore keeps only the SHA-256 of the three files at
start and builds the context when the first client connects.

Invariants:
    * A certificate, key or CA that :func:`server_context` refuses stops the
      start, with its message, before anything listens: the check builds the
      same context (:mod:`~meterd.channels.modbus.tls_context`) in a fresh
      interpreter, awaited without blocking the event loop.  A fresh process,
      not a fork: a forked child would inherit OpenSSL's locks as other threads
      held them (a password check's scrypt) and could wait for them for ever.
      If it gives no answer (it cannot start, dies, or is still running after
      ``CHECK_TIMEOUT``, when it is killed), the context is built in the
      daemon at start instead: the check is never skipped.
    * Only regular files are read, opened without blocking: a FIFO or device at
      a configured path is refused, never waited on.  The bytes read (the key's
      included) are overwritten once hashed.
    * The context served is built from files whose digests are those checked
      at start; files changed since (or unreadable) fail closed: every TLS
      client is refused until meterd restarts.  The failure is kept: a flood
      of clients never makes meterd read or parse the files again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import ssl
import stat
import subprocess
import sys
from pathlib import Path

from meterd.channels.modbus import tls_context
from meterd.channels.modbus.certificates import CANNOT_LOAD, server_context
from meterd.channels.modbus.config import TlsConfig
from meterd.errors import ChannelError, MeterdError

log = logging.getLogger(__name__)

#: The largest certificate chain, key or CA bundle meterd reads.
MAX_FILE_SIZE = 1 << 20
#: Seconds the start-time check in a fresh interpreter may take before meterd builds the context itself.
CHECK_TIMEOUT = 10.0

_MAX_ANSWER = 4096


def file_digests(tls: TlsConfig) -> tuple[bytes, ...]:
    """Return the SHA-256 of the certificate, key and CA files, each read whole.

    Raises:
        ChannelError: A path is not configured, or a file cannot be read, is not
            a regular file or is larger than :data:`MAX_FILE_SIZE`.
    """
    if tls.cert is None or tls.key is None or tls.ca is None:
        raise ChannelError("modbus: Modbus/TCP Security needs tls.cert, tls.key and tls.ca")
    return tuple(_digest(path) for path in (tls.cert, tls.key, tls.ca))


def _digest(path: Path) -> bytes:
    """SHA-256 of a regular file of at most :data:`MAX_FILE_SIZE` bytes, never waiting to open it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise ChannelError(f"{CANNOT_LOAD}: {e}") from e
    data = bytearray()
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise ChannelError(f"{CANNOT_LOAD}: {path}: not a regular file")
        if status.st_size > MAX_FILE_SIZE:
            raise ChannelError(f"{CANNOT_LOAD}: {path}: larger than {MAX_FILE_SIZE >> 20} MiB")
        # Sized by the file (a few KiB): one byte more shows a file that grew meanwhile.
        data = bytearray(status.st_size + 1)
        size = 0
        with memoryview(data) as view:
            while size < len(data) and (n := os.readv(fd, [view[size:]])):
                size += n
        if size > status.st_size:
            raise ChannelError(f"{CANNOT_LOAD}: {path}: changed while meterd was reading it")
        return hashlib.sha256(memoryview(data)[:size]).digest()
    except OSError as e:
        raise ChannelError(f"{CANNOT_LOAD}: {e}") from e
    finally:
        os.close(fd)
        data[:] = bytes(len(data))  # the key's bytes do not linger in the heap


class ServerTls:
    """The context of the Modbus/TCP Security listener: checked at start, built at the first handshake.

    Made by :meth:`checked`.

    Args:
        tls: The ``[modbus.tls]`` settings (enabled).
        digests: The SHA-256 of the certificate, key and CA files as checked.
        context: The context, if the check had to build it in this process.
    """

    def __init__(self, tls: TlsConfig, digests: tuple[bytes, ...], context: ssl.SSLContext | None) -> None:
        self._tls = tls
        self._digests = digests
        self._context = context
        self._failure: str | None = None

    @classmethod
    async def checked(cls, tls: TlsConfig) -> ServerTls:
        """Check ``tls``'s files in a fresh interpreter and return the context's source.

        Raises:
            ChannelError: A file is missing, unreadable, not a regular file, too
                large or refused by :func:`server_context` (a bad certificate or
                CA, a key that does not match), or changed while it was checked.
        """
        digests = file_digests(tls)
        context = await _check(tls, CHECK_TIMEOUT)
        if file_digests(tls) != digests:  # what was checked must be what the digests are of
            raise ChannelError(f"{CANNOT_LOAD}: a file changed while meterd was checking it")
        return cls(tls, digests, context)

    @property
    def built(self) -> bool:
        """True once the context exists (at start only if the separate check gave no answer)."""
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


class _NoAnswerError(MeterdError):
    """The fresh interpreter gave no verdict (it could not start, died, or ran too long)."""


async def _check(tls: TlsConfig, timeout: float) -> ssl.SSLContext | None:
    """Build ``tls``'s context in a fresh interpreter; None if it builds there.

    Without a verdict from that interpreter, the context is built here instead
    (the files being regular ones first) and returned.

    Raises:
        ChannelError: The context cannot be built, with OpenSSL's or the system's message.
    """
    try:
        answer = await _run_check(tls, timeout)
    except _NoAnswerError as e:
        log.warning(
            "modbus: the TLS certificate, key and CA could not be checked in a separate process (%s); "
            "loading them in meterd at start instead",
            e,
        )
        file_digests(tls)  # regular files only: OpenSSL would wait on a FIFO
        return server_context(tls)
    if answer is not None:
        raise ChannelError(f"{CANNOT_LOAD}: {answer}")
    return None


async def _run_check(tls: TlsConfig, timeout: float) -> str | None:
    command = [sys.executable, "-I", "-S", tls_context.__file__, str(tls.cert), str(tls.key), str(tls.ca)]
    # Run and awaited from the default executor's thread, which the start has made already
    # (asyncio's own subprocess support would start a child-watcher thread per process).
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise _NoAnswerError(f"no answer within {timeout:g} s") from None  # run() killed and reaped it
    except OSError as e:
        raise _NoAnswerError(f"cannot start {sys.executable}: {e}") from e
    if done.returncode == 0:
        return None
    if done.returncode == 1 and done.stdout and len(done.stdout) <= _MAX_ANSWER:
        return bytes(done.stdout).decode("utf-8", "replace")
    raise _NoAnswerError(f"exit status {done.returncode}")
