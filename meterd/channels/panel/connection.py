"""One front-panel client: framing, flood control, dispatch, and its sessions.

Invariants:
    * A message longer than ``max_message``, a flood beyond the rate limit,
      or a client that stops reading its answers gets at most one error line
      and a closed connection; nothing it sends reaches the guard afterwards.
    * Sessions belong to the connection that opened them: a token is only
      accepted on that connection, and they all end when it closes.
    * Requests run concurrently (a dual-control wait must not block the
      approver's message on the same connection), at most
      :data:`MAX_IN_FLIGHT` at once; answers carry the request's ``id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from meterd.channels.panel import actions
from meterd.channels.panel.config import PanelConfig
from meterd.channels.panel.protocol import (
    Action,
    Approve,
    ErrorCode,
    ListPending,
    Login,
    Logout,
    Op,
    PanelProtocolError,
    Ref,
    encode,
    failure,
    parse,
    success,
)
from meterd.guard import Pin, Session
from meterd.guard.dual_control import PendingApproval
from meterd.policy.request import Channel, DenyReason
from meterd.runtime import Runtime

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 4
#: Unread answers a client may leave queued before it is cut off.
MAX_WRITE_BUFFER = 64 * 1024
READ_CHUNK = 4096
LOGIN_FAILED = "login failed; repeated failures lock the account for a while"


class TokenBucket:
    """Allows ``rate`` events a second on average and ``burst`` at once."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp = now

    def take(self, now: float) -> bool:
        """Spend one token; return False if none is left."""
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class PanelConnection:
    """Serves one connected panel client until it leaves or misbehaves.

    Args:
        runtime: The daemon's guard and meter.
        config: Limits.
        reader: The connection's stream.
        writer: The connection's stream.
        source: The peer as recorded in the log (its uid and pid).
    """

    def __init__(
        self,
        runtime: Runtime,
        config: PanelConfig,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        source: str,
    ) -> None:
        self._runtime = runtime
        self._config = config
        self._reader = reader
        self._writer = writer
        self.source = source
        self._sessions: dict[str, Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._bucket = TokenBucket(config.rate, config.burst, time.monotonic())
        self._closing = False

    # -- output -------------------------------------------------------------

    def send(self, answer: dict[str, Any]) -> None:
        """Queue one answer line; cut off a client that does not read its answers."""
        if self._closing or self._writer.is_closing():
            return
        self._writer.write(encode(answer))
        if self._writer.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("panel client %s does not read its answers; closing", self.source)
            self._closing = True
            self._writer.transport.abort()

    def hang_up(self) -> None:
        """End the connection from the daemon's side (shutdown): reading stops, sessions end."""
        self._closing = True
        self._reader.feed_eof()

    def _refuse(self, code: ErrorCode, message: str) -> None:
        """Send a last error line and stop reading."""
        self.send(failure(code, message))
        self._closing = True

    # -- input --------------------------------------------------------------

    async def run(self) -> None:
        """Read and dispatch messages until EOF, an error, or a refusal."""
        buffer = bytearray()
        try:
            while not self._closing:
                chunk = await self._reader.read(READ_CHUNK)
                if not chunk:
                    break  # a message cut short by a disconnect is dropped unread
                buffer += chunk
                while not self._closing and (end := buffer.find(b"\n")) >= 0:
                    line = bytes(buffer[:end])
                    del buffer[: end + 1]
                    self._accept(line)
                if len(buffer) >= self._config.max_message:
                    self._refuse(
                        ErrorCode.TOO_LARGE, f"messages are at most {self._config.max_message} bytes"
                    )
        except (ConnectionError, OSError) as e:
            log.info("panel client %s: %s", self.source, e)
        finally:
            await self._shutdown()

    def _accept(self, line: bytes) -> None:
        if len(line) >= self._config.max_message:
            self._refuse(ErrorCode.TOO_LARGE, f"messages are at most {self._config.max_message} bytes")
            return
        if not self._bucket.take(time.monotonic()):
            log.warning("panel client %s exceeded %d messages/s; closing", self.source, self._config.rate)
            self._refuse(ErrorCode.RATE_LIMITED, "too many messages")
            return
        if not line.strip():
            return
        try:
            op = parse(line.rstrip(b"\r"))
        except PanelProtocolError as e:
            self.send(failure(e.code, e.message, e.ref))
            return
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self.send(failure(ErrorCode.BUSY, f"at most {MAX_IN_FLIGHT} requests at once", op.ref))
            return
        task = asyncio.get_running_loop().create_task(self._handle(op))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, op: Op) -> None:
        try:
            self.send(await self._dispatch(op))
        except asyncio.CancelledError:
            raise
        except Exception:  # one bad request must not take the connection or the daemon down
            log.exception("panel request failed")
            self.send(failure(ErrorCode.FAILED, "internal error", op.ref))

    # -- ops ------------------------------------------------------------------

    async def _dispatch(self, op: Op) -> dict[str, Any]:
        if isinstance(op, Login):
            return await self._login(op)
        if isinstance(op, Logout):
            return await self._logout(op)
        session = self._sessions.get(op.session)
        # A closed session still reaches the guard for actions and approvals, so the refusal names its user.
        if session is None or (session.closed and isinstance(op, ListPending)):
            return await self._bad_session(op.ref)
        return await self._in_session(session, op)

    async def _in_session(self, session: Session, op: Action | Approve | ListPending) -> dict[str, Any]:
        guard = self._runtime.guard
        if isinstance(op, Action):
            return await actions.perform(self._runtime, session, op, lambda p: self._pending(p, op.ref))
        if isinstance(op, Approve):
            decision = await guard.approve(session, op.approval, approve=op.approve)
            if decision.reason is DenyReason.BAD_REQUEST:
                # No such request: nothing was asked of the policy, so no permission to name.
                return failure(ErrorCode.BAD_REQUEST, decision.detail, op.ref)
            if not decision.allowed:
                return actions.denied(decision, op.ref)
            return success(op.ref, approval=op.approval, approved=op.approve)
        pending = [
            {"approval": p.id, "requester": p.requester, "permission": p.permission.value, "action": p.action}
            for p in guard.approvable(session)  # only what this session could approve
        ]
        return success(op.ref, pending=pending)

    def _pending(self, pending: PendingApproval, ref: Ref) -> None:
        self.send(
            success(
                ref,
                status="pending",
                approval=pending.id,
                message=f"waiting for a second person to approve request {pending.id}",
            )
        )

    async def _login(self, op: Login) -> dict[str, Any]:
        self._sessions = {k: s for k, s in self._sessions.items() if not s.closed}
        if len(self._sessions) >= self._config.max_sessions:
            return failure(
                ErrorCode.BUSY, f"at most {self._config.max_sessions} sessions per connection", op.ref
            )
        guard = self._runtime.guard
        if not await guard.authenticate(Channel.PANEL, self.source, op.user, Pin(op.pin)):
            return failure(ErrorCode.LOGIN_FAILED, LOGIN_FAILED, op.ref)
        opened = await guard.open_session(
            op.user, Channel.PANEL, self.source, actions.LOGIN_PERMISSIONS, actions.LOGIN_RESOURCE
        )
        if not isinstance(opened, Session):
            return actions.denied(opened, op.ref)
        self._sessions[opened.id] = opened
        idle = guard.policy.settings.session_idle_timeout
        return success(op.ref, session=opened.id, user=opened.principal, idle_timeout=idle)

    async def _logout(self, op: Logout) -> dict[str, Any]:
        if op.session is None:
            sessions = list(self._sessions.values())
        elif op.session in self._sessions:
            sessions = [self._sessions[op.session]]
        else:
            return await self._bad_session(op.ref)
        for session in sessions:
            del self._sessions[session.id]
            await self._runtime.guard.close_session(session, reason="logout")
        return success(op.ref, logged_out=len(sessions))

    async def _bad_session(self, ref: Ref) -> dict[str, Any]:
        # A token this connection never opened is a guess or a stale panel; either is worth a record.
        await self._runtime.guard.refuse(
            "anonymous", Channel.PANEL, self.source, {"reason": "unknown_session"}
        )
        return failure(ErrorCode.BAD_SESSION, "no such session; log in again", ref)

    # -- end ------------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Cancel pending requests, end the connection's sessions, close."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for session in list(self._sessions.values()):
            await self._runtime.guard.close_session(session, reason="disconnected")
        self._sessions.clear()
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await asyncio.wait_for(self._writer.wait_closed(), 2)
