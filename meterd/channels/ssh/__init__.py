"""The SSH channel: password and public-key login, the meter shell, and SFTP on the file area.

:class:`SshListener` is imported on first use, so reading the daemon's
configuration (which needs :data:`LOADER`) loads none of the listener,
asyncssh, the shell or the guard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterd.channels.ssh.config import LOADER, SshConfig

if TYPE_CHECKING:
    from meterd.channels.ssh.listener import SshListener

__all__ = ["LOADER", "SshConfig", "SshListener"]


def __getattr__(name: str) -> object:
    if name == "SshListener":
        from meterd.channels.ssh.listener import SshListener  # noqa: PLC0415 - see module docstring

        return SshListener
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
