"""The guard: meterd's single decision point.

Channels turn wire activity into requests and ask the :class:`Guard`; it
decides with the compiled policy, applies the stateful rules (login lockout,
session idle timeout, the peak-demand-reset lockout period, dual control),
writes the security-log record and counts the metric.  No channel checks a
permission itself.
"""

from meterd.guard.credentials import Certificate, Credential, Password, Pin, PublicKey
from meterd.guard.guard import Guard
from meterd.guard.log_verbs import Actor
from meterd.guard.observer import GuardObserver, NullObserver
from meterd.guard.permit import Permit
from meterd.guard.sessions import Session

__all__ = [
    "Actor",
    "Certificate",
    "Credential",
    "Guard",
    "GuardObserver",
    "NullObserver",
    "Password",
    "Permit",
    "Pin",
    "PublicKey",
    "Session",
]
