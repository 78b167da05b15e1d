"""Worker threads that give way to the event loop.

Password hashing (scrypt, a deliberate cost) and directory clients run in thread
pools so the event loop never waits for them.  On a two-core meter a burst of
logins would otherwise take both cores from the loop's thread, and with them the
answers of every channel (a Modbus poll's latency) and the watchdog's ping.
Linux keeps a nice value per thread: the workers' is raised, so the scheduler
gives the loop's thread the CPU first and the workers every cycle it leaves.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

#: The workers' nice value (raising it needs no privilege; 0 is the loop's).
WORKER_NICE = 10


def _give_way() -> None:
    # A failure only costs the priority, never the work.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)


def worker_pool(workers: int, name: str) -> ThreadPoolExecutor:
    """A pool of ``workers`` threads named ``name-N`` that run below the event loop's priority."""
    return ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=_give_way)
