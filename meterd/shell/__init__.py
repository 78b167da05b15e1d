"""The meter shell: a line-oriented command interpreter shared by SSH and the serial console.

Transport-independent: a channel supplies a :class:`Terminal` and a guard
:class:`~meterd.guard.Session`; every command maps to one permission, which
the guard decides before the command touches the meter.
"""

from meterd.shell.policy_edit import PolicyEditError, apply_policy_change
from meterd.shell.shell import MeterShell
from meterd.shell.terminal import EXIT_DENIED, EXIT_OK, EXIT_USAGE, Terminal

__all__ = [
    "EXIT_DENIED",
    "EXIT_OK",
    "EXIT_USAGE",
    "MeterShell",
    "PolicyEditError",
    "Terminal",
    "apply_policy_change",
]
