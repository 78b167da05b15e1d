"""What the guard reports to metrics: a protocol, so the policy core never imports a metrics library."""

from __future__ import annotations

from typing import Protocol

from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Outcome


class Tally(Protocol):
    """A count the caller adds to itself (``tally.pending += 1``): no call on a hot path."""

    #: Events not yet reported; the observer takes them when it reports.
    pending: int


class GuardObserver(Protocol):
    """Receives one call per event; must be cheap and must not raise."""

    def decision(self, channel: Channel, permission: Permission, outcome: Outcome) -> None:
        """A request was decided."""

    def decision_tally(self, channel: Channel, permission: Permission, outcome: Outcome) -> Tally:
        """The tally of these decisions: adding 1 to it is one call of :meth:`decision`."""

    def login_failure(self, channel: Channel) -> None:
        """A login attempt failed."""

    def account_locked(self, channel: Channel) -> None:
        """An account was locked after repeated failures."""

    def sessions(self, channel: Channel, active: int) -> None:
        """The number of open sessions on ``channel`` changed."""

    def modbus_request(self, function_code: int, outcome: Outcome) -> None:
        """A Modbus request was answered (allowed, refused, or failed)."""

    def modbus_tally(self, function_code: int, outcome: Outcome) -> Tally:
        """The tally of these answers: adding 1 to it is one call of :meth:`modbus_request`."""

    def policy_in_force(self, store_version: int, policy_version: int) -> None:
        """A policy was put in force: its policy-store version and its own ``[policy] version``."""

    def refusal_summarised(self, channel: Channel) -> None:
        """A refusal of an unauthenticated party was counted for a summary record, not recorded alone."""

    def connection_refused(self, channel: Channel) -> None:
        """A connection was closed as it was accepted: a channel's connection limit was reached."""

    def directory_login(self, backend: str, outcome: str) -> None:
        """A directory login ended (``backend``, ``outcome``: the closed sets of directory.backend)."""

    def directory_reachable(self, backend: str, reachable: bool) -> None:
        """A directory login learnt whether the directory could be reached."""


class _Ignored:
    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = 0


class NullObserver:
    """An observer that ignores everything (tests, tools)."""

    def decision(self, channel: Channel, permission: Permission, outcome: Outcome) -> None:
        """Ignore."""

    def decision_tally(self, channel: Channel, permission: Permission, outcome: Outcome) -> Tally:
        """A tally nobody reads."""
        return _Ignored()

    def login_failure(self, channel: Channel) -> None:
        """Ignore."""

    def account_locked(self, channel: Channel) -> None:
        """Ignore."""

    def sessions(self, channel: Channel, active: int) -> None:
        """Ignore."""

    def modbus_request(self, function_code: int, outcome: Outcome) -> None:
        """Ignore."""

    def modbus_tally(self, function_code: int, outcome: Outcome) -> Tally:
        """A tally nobody reads."""
        return _Ignored()

    def policy_in_force(self, store_version: int, policy_version: int) -> None:
        """Ignore."""

    def refusal_summarised(self, channel: Channel) -> None:
        """Ignore."""

    def connection_refused(self, channel: Channel) -> None:
        """Ignore."""

    def directory_login(self, backend: str, outcome: str) -> None:
        """Ignore."""

    def directory_reachable(self, backend: str, reachable: bool) -> None:
        """Ignore."""
