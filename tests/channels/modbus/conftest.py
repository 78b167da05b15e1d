"""Fixtures for the Modbus channel: a PKI, a runtime (guard, security log, simulated meter), servers and clients."""

from __future__ import annotations

import contextlib
import dataclasses
import ssl
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient, AsyncModbusTlsClient

from meterd.channels.modbus import ModbusConfig, ModbusListener, TlsConfig
from meterd.guard import Guard
from meterd.meter.simulation import SimulatedMeter
from meterd.policy.compile import compile_policy
from meterd.policy.loader import load_policy
from meterd.runtime import Runtime
from meterd.seclog import LogConfig, Query, Record, SecurityLog, read_records

from .pki import Pki, make_pki

MODBUS_PERMISSIONS = [
    "fs_read_only",
    "peak_demand_reset",
    "test_mode_toggle",
    "time_sync",
    "comm_config",
    "dss_config",
]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def policy_data(pki: Pki) -> dict[str, Any]:
    fp = {name: issued.fingerprint for name, issued in pki.clients.items()}
    return {
        "policy": {"name": "modbus tests", "version": 1},
        "settings": {"demand_reset_lockout": 900},
        "roles": {"modbus_reader": {"permissions": ["fs_read_only"]}},
        "users": {"op": {"roles": ["operator"]}},
        "applications": {
            "scada_view": {
                "roles": ["viewer"],
                "cert_fingerprints": [fp["viewer"], fp["expired"], fp["otherca"]],
            },
            "scada_ops": {"roles": ["operator"], "cert_fingerprints": [fp["operator"]]},
            "eng_tool": {"roles": ["engineer"], "cert_fingerprints": [fp["engineer"]]},
            "misfit": {"roles": ["engineer"], "cert_fingerprints": [fp["norole"], fp["wrongrole"]]},
        },
        "anonymous": {"roles": ["modbus_reader"], "scopes": ["/modbus"]},
        "constraints": {"channel_caps": {"modbus": {"permissions": MODBUS_PERMISSIONS}}},
    }


@dataclass
class Env:
    runtime: Runtime
    log_dir: Path
    meter: SimulatedMeter
    pki: Pki
    wall: list[float]

    @property
    def guard(self) -> Guard:
        return self.runtime.guard

    def records(self, **query: Any) -> list[Record]:
        return read_records(self.log_dir, Query(**query))

    def config(self, **overrides: Any) -> ModbusConfig:
        tls = TlsConfig(
            enabled=True, port=0, cert=self.pki.server.cert, key=self.pki.server.key, ca=self.pki.ca
        )
        fields: dict[str, Any] = {"port": 0, "tls": tls, "idle_timeout": 10.0, "frame_timeout": 2.0}
        fields.update(overrides)
        return dataclasses.replace(ModbusConfig(), **fields)


@pytest.fixture
def env(tmp_path: Path, pki: Pki) -> Iterator[Env]:
    log_dir = tmp_path / "seclog"
    config = LogConfig(append_only_attr=False)
    SecurityLog.init(log_dir, config)
    seclog = SecurityLog.open(log_dir, config)
    wall = [1_800_000_000.0]
    guard = Guard(compile_policy(load_policy(policy_data(pki))), seclog, wall=lambda: wall[0])
    meter = SimulatedMeter(tmp_path / "state")
    yield Env(Runtime(guard, meter, tmp_path / "state"), log_dir, meter, pki, wall)
    seclog.close()


@contextlib.asynccontextmanager
async def serving(env: Env, **overrides: Any) -> AsyncIterator[ModbusListener]:
    listener = ModbusListener(env.config(**overrides), env.runtime)
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()


def client_context(env: Env, who: str | None, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(env.pki.ca))
    if max_version is not None:
        with warnings.catch_warnings():  # an outdated version is what such a test is about
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = max_version
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client really offer it
    if who is not None:
        issued = env.pki.clients[who]
        context.load_cert_chain(issued.cert, issued.key)
    return context


@contextlib.asynccontextmanager
async def tcp_client(listener: ModbusListener) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient(
        "127.0.0.1", port=listener.ports["tcp"], timeout=2, retries=0, reconnect_delay=0
    )
    try:
        assert await client.connect()
        yield client
    finally:
        client.close()


@contextlib.asynccontextmanager
async def tls_client(
    env: Env, listener: ModbusListener, who: str | None, max_version: ssl.TLSVersion | None = None
) -> AsyncIterator[AsyncModbusTlsClient]:
    client = AsyncModbusTlsClient(
        "127.0.0.1",
        port=listener.ports["tls"],
        sslctx=client_context(env, who, max_version),
        timeout=2,
        retries=0,
        reconnect_delay=0,
    )
    try:
        await client.connect()
        yield client
    finally:
        client.close()
