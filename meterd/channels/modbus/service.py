"""One Modbus request: check its shape, ask the guard, act on the meter, answer.

The order is fixed, and each step's refusal has one answer:
    1. a unit id the meter does not serve: exception 0B, nothing recorded;
    2. a function meterd does not serve: 01; a PDU wrong for its function: 03;
    3. a register range that is not entirely mapped: 02; a write that is not
       to whole writable fields: 02; written words that mean nothing: 03;
    4. the guard refuses (the certificate's NULL role included): 01, recorded;
    5. the meter refuses the value: 03; the meter fails: 04, both recorded.

Reads are authorised with ``aggregate=True`` (counted, then recorded once per
sweep), so a SCADA poll loop cannot flood the security log; every write that
reaches step 3 is recorded, whatever becomes of it.

:meth:`ModbusService.answer_now` answers the poll loop's request, a
measurement read the guard allows again from the session's memory, without
awaiting anything and with the same effects and answer as :meth:`handle`;
anything else is left to :meth:`handle`.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from meterd.channels.modbus import protocol
from meterd.channels.modbus.encoding import EncodingError
from meterd.channels.modbus.protocol import ExceptionCode, ReadRequest, Refusal, WriteRequest
from meterd.channels.modbus.registers import (
    GROUP_FIELDS,
    READ_PERMISSION,
    Field,
    Group,
    covers_whole_fields,
    fields_in,
)
from meterd.channels.modbus.values import (
    MEASUREMENT_BASE,
    Change,
    MeasurementCache,
    apply,
    decode_write,
    read_words,
)
from meterd.errors import ChannelError, MeterError
from meterd.guard import Permit, Session
from meterd.meter.errors import MeterValueError
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, DenyReason, Outcome
from meterd.runtime import Runtime
from meterd.seclog.events import DetailValue

log = logging.getLogger(__name__)

_READ = struct.Struct(">BHH")
_READ_SIZE = _READ.size
_READ_FUNCTIONS = protocol.READ_FUNCTIONS
_MAX_READ_COUNT = protocol.MAX_READ_COUNT
_MEASUREMENT_END = GROUP_FIELDS[Group.MEASUREMENT][-1].end


class SessionEndedError(ChannelError):
    """The guard ended the session (idle timeout, revoked); the connection must close."""


@dataclass(slots=True)
class Peer:
    """One connection's principal as far as requests are concerned.

    Attributes:
        session: The guard session every request is decided in.
        tls: True for a Modbus/TCP Security connection.
    """

    session: Session
    tls: bool = False


class ModbusService:
    """Answers requests for every connection of the Modbus channel.

    Args:
        runtime: The guard and the meter.
        unit_ids: Unit ids the meter answers to.
    """

    def __init__(self, runtime: Runtime, unit_ids: tuple[int, ...]) -> None:
        self.guard = runtime.guard
        self.meter = runtime.meter
        self.unit_ids = frozenset(unit_ids)
        self.measurements = MeasurementCache(runtime.meter)
        self.counters: Counter[str] = Counter()
        self._refusals: set[asyncio.Task[bool]] = set()
        self._resources = {unit: f"/modbus/unit/{unit}" for unit in self.unit_ids}
        #: The guard's :meth:`~meterd.guard.Guard.authorize_again` (an attribute: it runs per read).
        self._allowed_again: Callable[[Session, Permission, str], Decision | None] = (
            self.guard.authorize_again
        )
        #: The metrics' count of the reads :meth:`answer_now` answers, by function.
        self._answered = {f: self.guard.modbus_tally(f, Outcome.ALLOW) for f in protocol.READ_FUNCTIONS}

    def refuse_connection(self, source: str, reason: str) -> None:
        """Count a connection closed as it was accepted; the guard counts and records it.

        Nobody has authenticated on it, so the guard records it within the budget of
        unauthenticated refusals (a flood writes a bounded number of records).

        Args:
            source: Peer address and port.
            reason: Which limit turned it away.
        """
        self.counters["connections_refused"] += 1
        task = asyncio.get_running_loop().create_task(
            self.guard.refuse_connection(Channel.MODBUS, source, reason)
        )
        self._refusals.add(task)
        task.add_done_callback(self._refusals.discard)

    async def settle(self, grace: float) -> None:
        """Wait (at most ``grace``) for the refusals still being recorded."""
        if self._refusals:
            await asyncio.wait(list(self._refusals), timeout=grace)

    def answer_now(self, peer: Peer, unit: int, body: bytes) -> bytes | None:
        """Answer a measurement read the guard allows again without deciding, or return None.

        None means nothing happened (nothing counted, decided or read): the
        request goes to :meth:`handle`.  An answer is exactly what
        :meth:`handle` would have answered, counted the same way.
        """
        resource = self._resources.get(unit)
        if resource is None or len(body) != _READ_SIZE or body[0] not in _READ_FUNCTIONS:
            return None
        function, address, count = _READ.unpack(body)
        # Entirely inside the measurement group (a contiguous run: see registers.group_of).
        if not (
            address >= MEASUREMENT_BASE
            and 0 < count <= _MAX_READ_COUNT
            and address + count <= _MEASUREMENT_END
        ):
            return None
        if self._allowed_again(peer.session, READ_PERMISSION, resource) is None:
            return None
        self.counters["requests"] += 1
        try:
            registers = self.measurements.registers()
        except MeterError as e:
            log.error("modbus: meter failed a read: %s", e)
            answer = self._refuse(function, ExceptionCode.SERVER_DEVICE_FAILURE, "meter_error")
            self.guard.modbus_answered(function, Outcome.ERROR)
            return answer
        start = 2 * (address - MEASUREMENT_BASE)
        self._answered[function].pending += 1  # guard.modbus_answered(function, ALLOW), without the calls
        return bytes((function, 2 * count)) + registers[start : start + 2 * count]

    async def handle(self, peer: Peer, header: protocol.Header, body: bytes) -> bytes:
        """Return the response PDU for one request PDU, counting it by function and outcome.

        Raises:
            SessionEndedError: The guard ended the session; close the connection.
        """
        answer = await self._handle(peer, header, body)
        function = body[0] if body else 0
        if answer[0] & 0x80 == 0:
            outcome = Outcome.ALLOW
        elif len(answer) > 1 and answer[1] == ExceptionCode.ILLEGAL_FUNCTION:
            outcome = Outcome.DENY
        else:
            outcome = Outcome.ERROR
        self.guard.modbus_answered(function, outcome)
        return answer

    async def _handle(self, peer: Peer, header: protocol.Header, body: bytes) -> bytes:
        self.counters["requests"] += 1
        request = protocol.parse_request(body)
        if header.unit not in self.unit_ids:
            return self._refuse(body[0], ExceptionCode.GATEWAY_TARGET_FAILED, "unknown_unit")
        if isinstance(request, Refusal):
            return self._refuse(request.function, request.code, request.why)
        fields = fields_in(request.address, request.count)
        resource = f"/modbus/unit/{header.unit}"
        detail: dict[str, DetailValue] = {
            "function": request.function,
            "address": request.address,
            "count": request.count,
            "unit": header.unit,
        }
        if isinstance(request, ReadRequest):
            return await self._read(peer, request, fields, resource, detail)
        return await self._write(peer, request, fields, resource, detail)

    async def _read(
        self,
        peer: Peer,
        request: ReadRequest,
        fields: tuple[Field, ...] | None,
        resource: str,
        detail: dict[str, DetailValue],
    ) -> bytes:
        if fields is None:
            return self._refuse(request.function, ExceptionCode.ILLEGAL_DATA_ADDRESS, "unmapped")
        if not (await self._authorize(peer, READ_PERMISSION, resource, detail, aggregate=True)).allowed:
            return self._refuse(request.function, ExceptionCode.ILLEGAL_FUNCTION, "denied")
        try:
            words = read_words(self.meter, fields, request.address, request.count, self.measurements)
        except MeterError as e:
            log.error("modbus: meter failed a read: %s", e)
            return self._refuse(request.function, ExceptionCode.SERVER_DEVICE_FAILURE, "meter_error")
        return protocol.read_response_pdu(request.function, words)

    async def _write(
        self,
        peer: Peer,
        request: WriteRequest,
        fields: tuple[Field, ...] | None,
        resource: str,
        detail: dict[str, DetailValue],
    ) -> bytes:
        permission = fields[0].group.write_permission if fields else None
        if (
            not fields
            or permission is None
            or not covers_whole_fields(fields, request.address, request.count)
        ):
            await self._record_refused_write(peer, None, resource, detail, "not_writable")
            return self._refuse(request.function, ExceptionCode.ILLEGAL_DATA_ADDRESS, "not_writable")
        detail["registers"] = fields[0].group.label
        try:
            change = decode_write(fields, request.values)
        except EncodingError as e:
            detail["error"] = str(e)[:200]
            await self._record_refused_write(peer, permission, resource, detail, "bad_value")
            return self._refuse(request.function, ExceptionCode.ILLEGAL_DATA_VALUE, "bad_value")
        detail["change"] = change.describe()
        decision = await self._authorize(peer, permission, resource, detail, aggregate=False)
        if not decision.allowed:
            return self._refuse(request.function, ExceptionCode.ILLEGAL_FUNCTION, "denied")
        return await self._apply(peer, request, change, decision, detail)

    async def _apply(
        self,
        peer: Peer,
        request: WriteRequest,
        change: Change,
        decision: Permit,
        detail: dict[str, DetailValue],
    ) -> bytes:
        # apply() is synchronous: no read can refill the cache before the change is made.
        self.measurements.invalidate()
        try:
            apply(self.meter, change)
        except MeterError as e:
            refused = isinstance(e, MeterValueError)
            code = ExceptionCode.ILLEGAL_DATA_VALUE if refused else ExceptionCode.SERVER_DEVICE_FAILURE
            detail["error"] = str(e)[:200]
            await decision.failed(detail)
            return self._refuse(request.function, code, "meter_refused")
        await decision.done()
        self.counters["writes"] += 1
        return protocol.write_response_pdu(request)

    async def _authorize(
        self,
        peer: Peer,
        permission: Permission,
        resource: str,
        detail: dict[str, DetailValue],
        *,
        aggregate: bool,
    ) -> Permit:
        session = peer.session
        decision = await self.guard.authorize(
            session, permission, resource, detail=detail, aggregate=aggregate
        )
        if decision.reason is DenyReason.SESSION_CLOSED:
            raise SessionEndedError(decision.detail)
        return decision

    async def _record_refused_write(
        self,
        peer: Peer,
        permission: Permission | None,
        resource: str,
        detail: dict[str, DetailValue],
        why: str,
    ) -> None:
        """Record a write refused for its shape: writes are always recorded, even nonsensical ones."""
        detail["reason"] = why
        session = peer.session
        await self.guard.refuse(
            session.principal,
            Channel.MODBUS,
            session.source,
            detail,
            kind="access",
            permission=permission,
            resource=resource,
        )

    def _refuse(self, function: int, code: ExceptionCode, why: str) -> bytes:
        self.counters[f"exception_{code.value:02x}"] += 1
        self.counters[why] += 1
        return protocol.exception_pdu(function, code)
