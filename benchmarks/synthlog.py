"""Writing a synthetic, valid security log fast: for the review tests and the review benchmark.

Frames are made with the log's own codec (body, chain, per-record MAC under
the evolving key, CRC), so :func:`meterd.seclog.verify` accepts the result
exactly as it accepts a log the daemon wrote; only the group-commit writer
and its fsyncs are skipped, which would make a million-record log take hours.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Outcome
from meterd.seclog.codec import GENESIS, encode_fields, evolve, make_body, make_frame, seal
from meterd.seclog.entry import encode_detail
from meterd.seclog.events import DetailValue, EventType
from meterd.seclog.segments import segment_name

START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Spec:
    """One record to write; ``at`` is seconds after :data:`START`."""

    event: EventType
    principal: str
    outcome: Outcome = Outcome.ALLOW
    channel: Channel = Channel.SSH
    permission: Permission | None = None
    resource: str = ""
    detail: dict[str, DetailValue] = field(default_factory=dict)
    kind: str = "user"
    source: str = "192.0.2.10:50022"
    at: float = 0.0


def allow(principal: str, permission: Permission, at: float, **kw: Any) -> Spec:
    """An allowed decision (``access_decision``)."""
    return Spec(EventType.ACCESS_DECISION, principal, Outcome.ALLOW, permission=permission, at=at, **kw)


def deny(principal: str, permission: Permission, at: float, reason: str = "not_granted", **kw: Any) -> Spec:
    """A refusal (``permission_denied``) with its reason (and any more ``detail``)."""
    detail: dict[str, DetailValue] = {"reason": reason, **kw.pop("detail", {})}
    return Spec(
        EventType.PERMISSION_DENIED,
        principal,
        Outcome.DENY,
        permission=permission,
        detail=detail,
        at=at,
        **kw,
    )


def login(principal: str, at: float, channel: Channel = Channel.SSH) -> Spec:
    """A successful login."""
    return Spec(EventType.LOGIN_SUCCESS, principal, channel=channel, detail={"session": "0123abcd"}, at=at)


def write_log(directory: Path, specs: Iterable[Spec], key: bytes | None = None) -> bytes:
    """Write ``specs`` (after a ``log_init`` record) as segment 1 of a new log; return the initial key."""
    initial = key if key is not None else os.urandom(32)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    init = Spec(
        EventType.LOG_INIT, "meterd", channel=Channel.LOCAL, detail={"format": 1}, kind="system", source=""
    )
    sealing, prev = initial, GENESIS
    with open(directory / segment_name(1), "wb", buffering=1 << 20) as out:
        for seq, spec in enumerate(_chain([init], specs), start=1):
            ts = (START + timedelta(seconds=spec.at)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            fields = encode_fields(
                spec.event.value,
                spec.principal,
                spec.kind,
                spec.channel.value,
                spec.source,
                spec.permission.value if spec.permission else "",
                spec.resource,
                spec.outcome.value,
                encode_detail(spec.detail),
            ).encode("ascii")
            body = make_body(seq, ts, fields, prev)
            digest = hashlib.sha256(body).digest()
            out.write(make_frame(body, seal(sealing, digest)))
            prev = digest.hex()
            sealing = evolve(sealing)
    return initial


def _chain(*parts: Iterable[Spec]) -> Iterator[Spec]:
    for part in parts:
        yield from part


USERS = ("alice", "bob", "carol", "dave")
_WORK = (
    ("alice", Permission.TERMINAL_ACCESS, "/"),
    ("alice", Permission.FS_READ_ONLY, "/files/data"),
    ("bob", Permission.COMM_CONFIG, "/settings/comm"),
    ("bob", Permission.TIME_SYNC, "/meter/clock"),
    ("carol", Permission.PEAK_DEMAND_RESET, "/meter/demand"),
    ("dave", Permission.SECURITY_LOGS_ACCESS, "/logs/security"),
)

_REFUSED = (
    ("alice", Permission.FIRMWARE_MANAGEMENT),
    ("carol", Permission.USER_MANAGEMENT),
    ("eve", Permission.TERMINAL_ACCESS),
)


def workload(count: int, seed: int = 19) -> Iterator[Spec]:
    """A plausible mix of ``count`` records: logins, allows, aggregated polling, refusals."""
    rng = random.Random(seed)
    for i in range(count):
        roll = rng.random()
        at = i * 0.5
        if roll < 0.02:
            yield login(rng.choice(USERS), at)
        elif roll < 0.1:
            who, permission = rng.choice(_REFUSED)
            yield deny(who, permission, at, resource="/")
        elif roll < 0.2:
            yield allow(
                "scada",
                Permission.FS_READ_ONLY,
                at,
                channel=Channel.MODBUS,
                resource="/modbus/unit/1",
                kind="application",
                detail={"aggregated": rng.randint(1, 50)},
            )
        else:
            who, permission, resource = rng.choice(_WORK)
            yield allow(
                who, permission, at, resource=resource, channel=rng.choice((Channel.SSH, Channel.SERIAL))
            )
