"""The key file of a live log: never ahead of the log, and only the newest key once the log is idle."""

from __future__ import annotations

import time
from pathlib import Path

from meterd.seclog import SecurityLog
from meterd.seclog.codec import key_at
from meterd.seclog.keys import unpack_slot
from meterd.seclog.segments import KEY_FILE

from .conftest import TEST_CONFIG, fill


def _slots(directory: Path) -> list[tuple[int, bytes] | None]:
    data = (directory / KEY_FILE).read_bytes()
    return [unpack_slot(data[:64]), unpack_slot(data[64:128])]


def test_an_idle_log_keeps_only_the_key_after_its_head(log_dir: Path, initial_key: bytes) -> None:
    """Forward security at rest: once appends stop, the older key is erased without a later sync."""
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        fill(log, 5)
        head = log.head_seq
        deadline = time.monotonic() + 5
        while True:
            valid = [slot for slot in _slots(log_dir) if slot is not None]
            if (len(valid) == 1 and valid[0][0] == head + 1) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert valid == [(head + 1, key_at(initial_key, head + 1))]


def test_the_key_on_disk_is_never_ahead_of_the_log(log_dir: Path, initial_key: bytes) -> None:
    with SecurityLog.open(log_dir, TEST_CONFIG) as log:
        for _ in range(20):
            fill(log, 3)
            durable = log.head_seq
            for slot in _slots(log_dir):
                if slot is not None:
                    assert slot[0] <= durable + 1
                    assert slot[1] == key_at(initial_key, slot[0])
