"""Crash safety: a writer killed with SIGKILL at random moments loses no acknowledged record."""

from __future__ import annotations

import os
import random
import select
import signal
import threading
import time
from pathlib import Path

import pytest

from meterd.policy.request import Outcome
from meterd.seclog import EventType, LogConfig, SecurityLog, read_records
from meterd.seclog.syncer import Fault
from meterd.seclog.verify import verify

KILLS = 300
WRITER_THREADS = 4
#: How long a child may take to open the log and acknowledge its first record.
FIRST_ACK_TIMEOUT = 10.0
#: Small segments so that kills also land during rotation.
CONFIG = LogConfig(
    append_only_attr=False, segment_bytes=16 << 10, capacity_bytes=256 << 20, checkpoint_interval=50
)


def _writer(directory: Path, run: int, ack_fd: int) -> None:
    """Child process: append from several threads, acknowledging each durable seq on the pipe."""
    log = SecurityLog.open(directory, CONFIG)
    # A SIGKILL rarely interrupts a single ``write``; a write cut short is what
    # a crash or power cut leaves behind, so the child's writes go in halves
    # with a pause between, to let the kills produce torn tails.
    log._store.syncer.set_fault(Fault.TEAR, 500)

    def work(thread: int) -> None:
        n = 0
        while True:
            seq = log.append(
                EventType.CONFIG_CHANGE,
                principal=f"w{thread}",
                outcome=Outcome.ALLOW,
                detail={"run": run, "n": n},
            )
            os.write(ack_fd, f"{seq} {run} {thread} {n}\n".encode())
            n += 1

    for thread in range(1, WRITER_THREADS):
        threading.Thread(target=work, args=(thread,), daemon=True).start()
    work(0)


def _run_and_kill(directory: Path, run: int, delay: float) -> list[tuple[int, int, int, int]]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        try:
            os.close(read_fd)
            _writer(directory, run, write_fd)
        finally:
            os._exit(1)
    os.close(write_fd)
    # The random delay counts from the child's first acknowledgement, not from the
    # fork: on a busy machine opening the log can take longer than the delay, and
    # a kill before the first append would test nothing.
    chunks: list[bytes] = []
    deadline = time.monotonic() + FIRST_ACK_TIMEOUT
    while not any(b"\n" in c for c in chunks):
        ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break  # the assertions below report a child that never acknowledged
        chunk = os.read(read_fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    while chunk := os.read(read_fd, 1 << 16):
        chunks.append(chunk)
    os.close(read_fd)
    acks = []
    for line in b"".join(chunks).decode().splitlines():
        seq, run_, thread, n = map(int, line.split())
        acks.append((seq, run_, thread, n))
    return acks


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_acknowledged_record(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    key = SecurityLog.init(directory, CONFIG)
    rng = random.Random(20240601)
    acked: dict[int, tuple[int, int, int]] = {}
    started = time.monotonic()
    recovered = 0
    for run in range(KILLS):
        for seq, run_, thread, n in _run_and_kill(directory, run, rng.uniform(0.0, 0.025)):
            assert seq not in acked, f"seq {seq} acknowledged twice"
            acked[seq] = (run_, thread, n)
        with SecurityLog.open(directory, CONFIG) as log:  # recovery cuts any torn tail
            recovered += log.head_seq > 0
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"crash test took {elapsed:.0f} s"
    assert len(acked) > KILLS  # the kills really landed mid-stream

    report = verify(directory, key=key)
    assert report.ok, report.finding
    records = {r.seq: r for r in read_records(directory)}
    for seq, (run, thread, n) in acked.items():
        record = records.get(seq)
        assert record is not None, f"acknowledged seq {seq} is lost"
        assert (record.principal, record.detail["run"], record.detail["n"]) == (f"w{thread}", run, n)
    torn = [r for r in records.values() if r.event is EventType.LOG_RECOVERED]
    assert torn, "no kill produced a torn tail"
    assert all(int(str(r.detail["cut_bytes"])) > 0 for r in torn)
