"""The systemd notify client never stalls the daemon, even when nobody reads its messages."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from meterd.daemon.notify import Notifier


def test_a_manager_that_stops_reading_does_not_block_the_sender(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        # Far more than a datagram socket queues (net.unix.max_dgram_qlen is 10 to 512).

        def send_many() -> None:
            for _ in range(2000):
                notifier.send(WATCHDOG="1")

        sender = threading.Thread(target=send_many, daemon=True)
        sender.start()
        sender.join(timeout=30)
        assert not sender.is_alive()
        assert manager.recv(64) == b"WATCHDOG=1"  # what fitted was delivered
