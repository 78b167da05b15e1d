"""The interface every directory backend implements, and its two errors.

Invariants:
    * :meth:`DirectoryBackend.authenticate` blocks (it runs in a worker
      thread, never on the event loop) and returns or raises by its
      ``deadline`` (``time.monotonic()`` based), whatever the servers do.
    * A refusal (:class:`DirectoryRefused`) is an answer: nothing is cached
      and no offline fallback applies.  Only :class:`DirectoryUnreachable`
      (no server answered within the budget) lets the meter fall back.
"""

from __future__ import annotations

from typing import Protocol

from meterd.errors import MeterdError
from meterd.record import record

#: Backend names (``DirectoryBackend.name``), a closed set for metrics labels.
BACKEND_NAMES = ("ldap", "radius")
#: How a directory login can end, a closed set for metrics labels.
LOGIN_OUTCOMES = (
    "success",
    "refused",
    "unreachable",
    "not_mapped",
    "sod_violation",
    "locked",
    "offline",
    "error",
)


@record
class DirectoryIdentity:
    """Who a directory says a user is.

    Attributes:
        name: The user's name as the meter knows it (the login name).
        groups: Directory group names: LDAP group DNs and CNs, RADIUS ``Class`` or ``Filter-Id`` values.
        roles: Roles the directory names directly (RADIUS meterd attribute); empty for LDAP.
        scope: A scope the directory names (optional RADIUS attribute); None for LDAP.
        backend: ``"ldap"`` or ``"radius"``.
        server: URI of the server that answered.
    """

    name: str
    groups: frozenset[str]
    roles: frozenset[str]
    scope: str | None
    backend: str
    server: str


class DirectoryError(MeterdError):
    """A directory login did not produce an identity.

    Attributes:
        server: URI of the server concerned ("" when none was tried).
        step: What failed (``connect``, ``tls``, ``starttls``, ``bind``, ``search``, ...).
    """

    def __init__(self, message: str, *, server: str = "", step: str = "") -> None:
        self.server = server
        self.step = step
        super().__init__(message)


class DirectoryRefused(DirectoryError):
    """A server answered and said no (bad password, unknown user)."""


class DirectoryUnreachable(DirectoryError):
    """No server answered within the budget; the message names the server and the step."""


class DirectoryBackend(Protocol):
    """A directory the meter asks to authenticate remote users.

    Attributes:
        name: ``"ldap"`` or ``"radius"``.
    """

    name: str

    def authenticate(self, user: str, password: str, deadline: float) -> DirectoryIdentity:
        """Authenticate ``user`` and return their identity; blocks, never past ``deadline``.

        Args:
            user: The login name.
            password: The password typed.
            deadline: ``time.monotonic()`` by which to return or raise.

        Raises:
            DirectoryRefused: A server answered and said no.
            DirectoryUnreachable: No server answered within the budget.
        """
        ...
