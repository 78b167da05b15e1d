"""Where password and PIN checks run: threads of their own, with room kept for local logins.

A check costs scrypt (about 80 ms of CPU and 32 MiB), so a flood of guesses
over the network must not decide how long a technician at the serial port or
the front panel waits, nor hold up other work (security-log reads) that runs
in the event loop's default executor.

Invariants:
    * Network checks (every channel but serial, panel and local) run in their
      own :data:`NETWORK_CHECKS` threads, at most :data:`PER_ADDRESS` at once
      for one peer address; the rest wait their turn in order, one address's
      queue at a time, so one noisy address cannot push others back.
    * Local checks run in :data:`LOCAL_CHECKS` threads no network check ever
      uses: a local check waits at most behind other local checks.
    * A slot is given back when its thread has finished, not when its caller
      stops waiting, so a dropped connection cannot free a thread still busy.
    * Where a check waits depends only on the channel and the peer address,
      never on the name or the account, so timing reveals neither.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from meterd.policy.request import Channel
from meterd.workers import worker_pool

#: Channels whose users stand at the meter; they never queue behind network guesses.
LOCAL_CHANNELS = frozenset({Channel.SERIAL, Channel.PANEL, Channel.LOCAL})
#: Network checks running at once (each holds 32 MiB while it runs).
NETWORK_CHECKS = 2
#: Network checks running at once for one peer address.
PER_ADDRESS = 1
#: Local checks running at once, in threads of their own.
LOCAL_CHECKS = 1


def address_of(source: str) -> str:
    """The peer address of a ``host:port`` source (the source itself if it has no port)."""
    host, colon, port = source.rpartition(":")
    return host if colon and port.isdigit() else source


class CredentialChecks:
    """Runs credential checks in bounded executors of their own.

    Args:
        network: Network checks running at once.
        per_address: Network checks running at once for one peer address.
        local: Local checks running at once.
    """

    def __init__(
        self, network: int = NETWORK_CHECKS, per_address: int = PER_ADDRESS, local: int = LOCAL_CHECKS
    ) -> None:
        self._network = asyncio.Semaphore(network)
        self._local = asyncio.Semaphore(local)
        self._per_address = per_address
        self._addresses: dict[str, tuple[asyncio.Semaphore, int]] = {}
        self._network_threads = worker_pool(network, "meterd-check-network")
        self._local_threads = worker_pool(local, "meterd-check-local")

    async def run(self, channel: Channel, source: str, check: Callable[[], bool]) -> bool:
        """Run ``check`` in a thread once a slot of ``channel`` (and ``source``'s address) is free."""
        if channel in LOCAL_CHANNELS:
            return await self._in_thread(self._local_threads, (self._local,), check)
        address = address_of(source)
        gate, users = self._addresses.get(address, (None, 0))
        if gate is None:
            gate = asyncio.Semaphore(self._per_address)
        self._addresses[address] = (gate, users + 1)
        try:
            return await self._in_thread(self._network_threads, (gate, self._network), check)
        finally:
            gate, users = self._addresses[address]
            if users > 1:
                self._addresses[address] = (gate, users - 1)
            else:
                del self._addresses[address]

    @staticmethod
    async def _in_thread(
        threads: ThreadPoolExecutor, gates: tuple[asyncio.Semaphore, ...], check: Callable[[], bool]
    ) -> bool:
        held: list[asyncio.Semaphore] = []
        try:
            for gate in gates:
                await gate.acquire()
                held.append(gate)
            future = asyncio.get_running_loop().run_in_executor(threads, check)
        except BaseException:
            for gate in held:
                gate.release()
            raise

        def release(_: object) -> None:
            for gate in held:
                gate.release()

        future.add_done_callback(release)
        # Shielded: a caller that stops waiting leaves the slot held until the thread is done.
        return await asyncio.shield(future)


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CredentialChecks] = weakref.WeakKeyDictionary()


def credential_checks() -> CredentialChecks:
    """The credential checks of the running event loop (their semaphores belong to it)."""
    loop = asyncio.get_running_loop()
    checks = _BY_LOOP.get(loop)
    if checks is None:
        checks = _BY_LOOP[loop] = CredentialChecks()
    return checks
