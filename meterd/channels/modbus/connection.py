"""One Modbus/TCP peer: admission, the request loop, its timing and its end.

Each connection is an :class:`asyncio.Protocol`: frames are cut from what
``data_received`` delivers, and a request is answered in place when it needs
no await (a measurement read the guard allows again, see
:meth:`~meterd.channels.modbus.service.ModbusService.answer_now`); anything
else runs as one task, and the connection reads nothing more until it has
answered (requests are answered one at a time, in order).  Bad framing closes
the connection; nothing one client does reaches another client's connection
except through its listener's limits.

Timing, with one timer per connection, re-armed only when it fires:
    * between requests, the first byte of the next one must come within
      ``idle_timeout`` (else the connection closes: ``idle_timeouts``);
    * once a frame has started, all of it must come within ``frame_timeout``
      (else: ``connections_dropped``), so a slow sender cannot hold a slot;
    * a request beyond the client's rate waits for its slot with reading
      paused, so a flooding client fills its own TCP window; a wait longer
      than ``idle_timeout`` hangs up.

A Modbus/TCP Security peer is a
:class:`~meterd.channels.modbus.tls.ModbusTlsConnection`: the same
connection, admitted through a TLS handshake and a certificate's session
rather than as the anonymous principal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from meterd.channels.modbus import protocol
from meterd.channels.modbus.config import ModbusConfig
from meterd.channels.modbus.limits import ConnectionLimits, Pool
from meterd.channels.modbus.service import ModbusService, Peer, SessionEndedError
from meterd.policy.request import Channel
from meterd.runtime import Runtime

log = logging.getLogger(__name__)

# Assigned, not imported: CPython 3.11 compiles a method call on an imported name
# as an attribute load (a bound method per call), on an assigned one as LOAD_METHOD.
_MBAP = protocol.MBAP
_HEADER = protocol.MBAP_SIZE
_MAX_LENGTH = protocol.MAX_MBAP_LENGTH
_monotonic = time.monotonic


class ModbusConnection(asyncio.Protocol):
    """Serves one connection of the plain Modbus TCP listener until it ends; never raises for the peer.

    Args:
        config: The ``[modbus]`` settings.
        runtime: The guard, the meter and the state directory.
        service: The listener's request handler (and its counters).
        pool: The budget of the listener that accepted it.
        connections: The listener's open connections (this one adds and removes itself).
    """

    def __init__(
        self,
        config: ModbusConfig,
        runtime: Runtime,
        service: ModbusService,
        pool: Pool,
        *,
        connections: set[ModbusConnection],
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.service = service
        self._pool = pool
        # Bound once: both run per request.
        self._delay = pool.rate.delay
        self._answer_now = service.answer_now
        self._connections = connections
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._client = "?"
        self._source = "?:0"
        self._held: ConnectionLimits | None = None
        self._peer: Peer | None = None
        self._buffer = bytearray()
        self._busy = True  # until the peer is known: nothing is read as a request
        self._write_paused = False
        self._closing = False
        self._lost = False
        self._idle_since = 0.0
        self._frame_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        #: The task running now (TLS login, a request that awaits), if any.
        self.task: asyncio.Task[None] | None = None
        #: True while the TLS handshake runs: stopping cancels it rather than hanging up.
        self.handshaking = False
        #: Done once the connection is closed and everything it started has finished.
        self.finished: asyncio.Future[None] = self._loop.create_future()

    # -- lifetime -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the connection (or close it at once), then start its requests as the anonymous principal."""
        if self._accept(transport, self._pool.connections) is None:
            return
        self._peer = Peer(self.runtime.guard.anonymous_session(Channel.MODBUS, self._source))
        self._start_requests()

    def _accept(
        self, transport: asyncio.BaseTransport, held: ConnectionLimits | None
    ) -> asyncio.Transport | None:
        """Take the peer's address and a slot in ``held``; the transport, or None (aborted) without a slot."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        address = transport.get_extra_info("peername") or ("?", 0)
        self._client = str(address[0])
        self._source = f"{self._client}:{address[1]}"
        self._connections.add(self)
        if not self._admit(held):
            transport.abort()
            return None
        return transport

    def _admit(self, held: ConnectionLimits | None) -> bool:
        """Hold a slot in ``held`` until the connection is lost; False (counted as refused) without one."""
        if held is None or not held.admit(self._client):
            limit = "too_many_handshakes" if held is self._pool.handshakes else "too_many_connections"
            self.service.refuse_connection(self._source, limit)
            return False
        self._held = held
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        """Give the slot back; the connection has finished once the task under way (if any) has.

        Runs once, whoever calls it first: asyncio, or the TLS login after a failed
        handshake (asyncio tells no protocol of a connection lost during ``start_tls``).
        """
        if self._lost:
            return
        self._lost = True
        if not self._closing and (exc is not None or self._frame_since is not None):
            self.service.counters["connections_dropped"] += 1  # reset, or gone half-way through a frame
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        if self._held is not None:
            self._held.release(self._client)
            self._held = None
        if self.task is not None and not self.task.done():
            self.task.add_done_callback(lambda _t: self._end())
        else:
            self._end()

    def _end(self) -> None:
        """Let go of the peer once nothing runs for it any more (an anonymous session needs no closing)."""
        self._peer = None
        self._finish()

    def _finish(self) -> None:
        self._connections.discard(self)
        if not self.finished.done():
            self.finished.set_result(None)

    def hang_up(self) -> None:
        """Close the connection from the daemon's side (a running request finishes its record first)."""
        self._close()

    def _close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def _drop(self, counter: str, why: object) -> None:
        self.service.counters[counter] += 1
        log.debug("modbus: %s closed: %s", self._source, why)
        self._close()

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        self.task = self._loop.create_task(coro)

    # -- flow control ---------------------------------------------------------

    def pause_writing(self) -> None:
        """The peer does not read its answers: read nothing more until it does."""
        self._write_paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        """The peer reads again: carry on with what it sent."""
        self._write_paused = False
        self._resume()

    def _resume(self) -> None:
        if self._closing or self._busy or self._write_paused or self._transport is None:
            return
        self._transport.resume_reading()
        self.data_received(b"")

    # -- timing ---------------------------------------------------------------

    def _start_requests(self) -> None:
        self._busy = False
        self._idle_since = self._loop.time()
        self._arm(self._idle_since + self.config.idle_timeout)
        self._resume()

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._closing:
            return
        now = self._loop.time()
        config = self.config
        if self._busy:  # answering or waiting for a rate slot: the peer is not idle
            self._arm(now + config.idle_timeout)
        elif self._frame_since is not None:
            if now >= self._frame_since + config.frame_timeout:
                self._drop("connections_dropped", "frame not complete within frame_timeout")
            else:
                self._arm(self._frame_since + config.frame_timeout)
        elif now >= self._idle_since + config.idle_timeout:
            self.service.counters["idle_timeouts"] += 1
            self._close()
        else:
            self._arm(self._idle_since + config.idle_timeout)

    # -- requests -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Take what the peer sent; answer the whole frames buffered, in order, until one must wait.

        A request that needs an await, or a rate slot, holds the rest: nothing more is
        answered (or read) until it is answered.  Called with ``b""`` to carry on then.
        """
        buffer = self._buffer
        buffer += data
        peer = self._peer
        transport = self._transport
        if self._busy or peer is None or transport is None:
            return
        # Only _hold sets _busy, and it is followed by a return; a write may pause writing.
        while not self._write_paused and not self._closing:
            if len(buffer) < _HEADER:
                if buffer:
                    self._frame_started()
                return
            transaction, protocol_id, length, unit = _MBAP.unpack_from(buffer)
            if protocol_id != 0 or not 2 <= length <= _MAX_LENGTH:
                # The byte stream has lost its framing (what protocol.parse_header refuses).
                self._drop(
                    "connections_dropped", f"not Modbus framing: protocol {protocol_id}, length {length}"
                )
                break
            end = _HEADER - 1 + length
            if len(buffer) < end:
                self._frame_started()
                return
            body = bytes(buffer[_HEADER:end])
            del buffer[:end]
            self._frame_since = None
            now = _monotonic()  # the loop's clock (BaseEventLoop.time), one call less
            wait = self._delay(self._client, now)
            if wait > 0:
                self.service.counters["throttled"] += 1
                if wait > self.config.idle_timeout:
                    self._close()
                    return
                self._hold()
                self._loop.call_later(wait, self._answer_later, transaction, unit, body)
                return
            answer = self._answer_now(peer, unit, body)
            if answer is None:
                self._hold()
                self._run(self._answer_async(protocol.Header(transaction, length - 1, unit), body))
                return
            transport.write(_MBAP.pack(transaction, 0, len(answer) + 1, unit) + answer)  # as _send
            self._idle_since = now

    def _frame_started(self) -> None:
        if self._frame_since is None:
            self._frame_since = now = self._loop.time()
            deadline = now + self.config.frame_timeout
            if self._timer is None or deadline < self._timer_at:
                self._arm(deadline)

    def _hold(self) -> None:
        """Read nothing more until the request under way is answered."""
        self._busy = True
        if self._transport is not None:
            self._transport.pause_reading()

    def _release(self) -> None:
        self._busy = False
        self._idle_since = self._loop.time()
        self._resume()

    def _send(self, transaction: int, unit: int, pdu: bytes, now: float) -> None:
        if self._transport is not None and not self._closing:
            self._transport.write(_MBAP.pack(transaction, 0, len(pdu) + 1, unit) + pdu)
        self._idle_since = now

    def _answer_later(self, transaction: int, unit: int, body: bytes) -> None:
        """A throttled request's slot has come: answer it, then carry on."""
        peer = self._peer
        if self._closing or peer is None:
            return
        answer = self.service.answer_now(peer, unit, body)
        if answer is None:
            self._run(self._answer_async(protocol.Header(transaction, len(body), unit), body))
            return
        self._send(transaction, unit, answer, self._loop.time())
        self._release()

    async def _answer_async(self, header: protocol.Header, body: bytes) -> None:
        peer = self._peer
        if peer is None:
            return
        try:
            answer = await self.service.handle(peer, header, body)
        except SessionEndedError:
            self.service.counters["sessions_ended"] += 1
            self._close()
            return
        except asyncio.CancelledError:
            self.service.counters["connections_stopped"] += 1
            self._close()
            raise
        except Exception:  # fail closed: one request's fault ends only its connection
            log.exception("modbus: request from %s failed", self._source)
            self._close()
            return
        self._send(header.transaction, header.unit, answer, self._loop.time())
        self._release()
