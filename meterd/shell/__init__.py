"""The meter shell: a line-oriented command interpreter shared by SSH and the serial console.

Transport-independent: a channel supplies a :class:`Terminal` and a guard
:class:`~meterd.guard.Session`; every command maps to one permission, which
the guard decides before the command touches the meter.

The interpreter and its commands are imported on first use (the first login,
not the daemon's start): an idle meter does not hold them in memory.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from meterd.shell.terminal import EXIT_DENIED, EXIT_OK, EXIT_USAGE, Terminal

if TYPE_CHECKING:
    from meterd.shell.policy_edit import PolicyEditError, apply_policy_change
    from meterd.shell.shell import MeterShell

__all__ = [
    "EXIT_DENIED",
    "EXIT_OK",
    "EXIT_USAGE",
    "MeterShell",
    "PolicyEditError",
    "Terminal",
    "apply_policy_change",
]

_LAZY = {
    "MeterShell": "meterd.shell.shell",
    "PolicyEditError": "meterd.shell.policy_edit",
    "apply_policy_change": "meterd.shell.policy_edit",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
