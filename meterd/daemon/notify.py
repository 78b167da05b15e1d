"""The systemd notify protocol (READY, STATUS, STOPPING, WATCHDOG) without libsystemd."""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends state to systemd when ``NOTIFY_SOCKET`` is set; does nothing otherwise."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # An address starting with "@" is in the abstract namespace.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watched = usec.isdigit() and (not pid or pid == str(os.getpid()))
        #: Seconds between watchdog pings (half the interval systemd expects), or None.
        self.watchdog_interval: float | None = int(usec) / 2e6 if watched and int(usec) > 0 else None

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens."""
        return bool(self._address)

    def send(self, **fields: str) -> None:
        """Send ``KEY=value`` lines, e.g. ``send(READY="1", STATUS="running")``; never raises."""
        if not self._address:
            return
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            # Non-blocking: this runs on the event loop, and a manager that stops reading
            # (a full socket queue) must not stall every channel; a dropped ping is harmless.
            flags = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
            with socket.socket(socket.AF_UNIX, flags) as sock:
                sock.sendto(message, self._address)
        except OSError:
            # The manager going away (or not keeping up) must not take the daemon with it.
            pass
