"""The guard's authentication and sessions: who someone is, and the sessions they hold.

A locked account, an unknown name and a wrong secret answer alike
(:meth:`Login.authenticate`); a session opens only for a principal that holds
one of the channel's login permissions, and closes (logout, idle timeout,
disconnect) with exactly one record.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Iterator

from meterd.guard.audit import DetailValue, EventType, principal_kind
from meterd.guard.core import GuardCore
from meterd.guard.credential_checks import credential_checks
from meterd.guard.credentials import (
    Credential,
    Password,
    PublicKey,
    check_credential,
    counts_toward_lockout,
)
from meterd.guard.decide import decide, evaluate
from meterd.guard.sessions import Session
from meterd.policy.compile import CompiledPolicy
from meterd.policy.directory import is_local
from meterd.policy.grants import PrincipalKind, grants_of
from meterd.policy.model import ANONYMOUS
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, DenyReason, Outcome, Request
from meterd.policy.scope import contains

log = logging.getLogger(__name__)


def _scopes_below(compiled: CompiledPolicy, principal: str, resource: str) -> set[str]:
    """The principal's grant scopes that lie strictly below ``resource``."""
    return {
        scope
        for grant in grants_of(compiled.policy, principal)
        for scope in grant.scopes
        if scope != resource and contains(resource, scope)
    }


class Login(GuardCore):
    """Authentication, the login lockout and the session registry's verbs."""

    async def authenticate(self, channel: Channel, source: str, name: str, credential: Credential) -> bool:
        """Check a credential, counting failures and locking accounts.

        A locked account, an unknown name and a wrong secret all return False
        after the same work, so the answer reveals nothing; the log says which.
        """
        compiled, credentials = self._compiled, self._credentials
        settings = compiled.policy.settings
        gate = self.directory
        if (
            gate is not None
            and isinstance(credential, Password)
            and gate.applies(channel)
            and not is_local(self._base.policy, name)
        ):
            # Directory logins (and their offline cache) load only on a meter that has a gate.
            from meterd.guard.directory_login import directory_login  # noqa: PLC0415

            return await directory_login(
                self, gate, channel=channel, source=source, name=name, password=credential.secret
            )
        now = self._monotonic()
        locked = self.lockout.locked(name, channel, now)
        # Always do the check, so a locked account answers as slowly as any other.  A
        # password or PIN costs scrypt: it runs in the credential-check threads, where a
        # network flood queues apart from local logins; keys and certificates are a lookup.
        if counts_toward_lockout(credential):
            valid = await credential_checks().run(
                channel,
                source,
                functools.partial(check_credential, compiled.policy, credentials, name, credential),
            )
        else:
            valid = check_credential(compiled.policy, credentials, name, credential)
        if valid and not locked:
            self.lockout.success(name, channel)
            return True
        reason = "locked" if locked else "bad_credentials"
        await self.record(
            EventType.LOGIN_FAILURE,
            name,
            Outcome.DENY,
            channel=channel,
            source=source,
            detail={"reason": reason, "method": type(credential).__name__.lower()},
        )
        self.observer.login_failure(channel)
        if (
            not locked
            and counts_toward_lockout(credential)
            and self.lockout.failure(
                name, channel, now, settings.login_failure_threshold, settings.login_lockout
            )
        ):
            await self.locked_out(name, channel, source)
        return False

    async def locked_out(self, name: str, channel: Channel, source: str) -> None:
        """Record and count that ``name`` has just been locked on ``channel``."""
        settings = self._compiled.policy.settings
        self.observer.account_locked(channel)
        await self.record(
            EventType.ACCOUNT_LOCKED,
            name,
            Outcome.DENY,
            channel=channel,
            source=source,
            detail={"seconds": settings.login_lockout, "failures": settings.login_failure_threshold},
        )

    async def open_session(
        self,
        principal: str,
        channel: Channel,
        source: str,
        any_of: tuple[Permission, ...],
        resource: str = "/",
    ) -> Session | Decision:
        """Open a session if ``principal`` holds one of ``any_of`` on ``channel`` at or below ``resource``.

        A principal whose grants are scoped below ``resource`` (a technician
        limited to one feeder) may still log in; what each later request may
        touch is decided request by request.

        Returns:
            The session, or the refusing decision (recorded as a login failure).
        """
        if self.directory is not None:
            from meterd.guard.directory_login import break_glass_allowed  # noqa: PLC0415 - see authenticate

            if not await break_glass_allowed(
                self, self.directory, channel=channel, source=source, name=principal
            ):
                return Decision(
                    Request(principal, any_of[0], resource, channel, source),
                    Outcome.DENY,
                    DenyReason.NOT_GRANTED,
                    "break-glass accounts log in only while the directory is unreachable",
                )
        compiled = self._compiled
        places = [resource, *sorted(_scopes_below(compiled, principal, resource))]
        refusal: Decision | None = None
        for permission, place in ((p, r) for p in any_of for r in places):
            decision = evaluate(compiled, Request(principal, permission, place, channel, source))
            if decision.allowed:
                break
            refusal = refusal or decision
        else:
            denied = refusal or Decision(
                Request(principal, Permission.TERMINAL_ACCESS, resource, channel, source),
                Outcome.DENY,
                DenyReason.NOT_GRANTED,
                "no permission to log in",
            )
            await self._commit(denied, None, {"login": True})
            await self.record(
                EventType.LOGIN_FAILURE,
                principal,
                Outcome.DENY,
                channel=channel,
                source=source,
                detail={"reason": "not_permitted"},
            )
            self.observer.login_failure(channel)
            return denied
        session = self.sessions.open(
            principal, principal_kind(compiled, principal), channel, source, self._monotonic()
        )
        detail: dict[str, DetailValue] = {"session": session.id[:8]}
        if self.directory is not None:
            from meterd.guard.directory_login import login_path  # noqa: PLC0415 - as above

            detail.update(login_path(self, self.directory, session))
        if not await self.record(
            EventType.LOGIN_SUCCESS, principal, Outcome.ALLOW, channel=channel, source=source, detail=detail
        ):
            self.sessions.remove(session)
            return Decision(
                Request(principal, any_of[0], resource, channel, source),
                Outcome.DENY,
                DenyReason.LOG_UNAVAILABLE,
                "security log unavailable",
            )
        self.observer.sessions(channel, self.sessions.count(channel))
        return session

    async def close_session(self, session: Session, *, timed_out: bool = False, reason: str = "") -> None:
        """End a session (logout, idle timeout, disconnect) and record it once."""
        if not self.sessions.remove(session):
            return
        session.closed = True
        event = EventType.LOGOUT_TIMEOUT if timed_out else EventType.LOGOUT_MANUAL
        detail: dict[str, DetailValue] = {"session": session.id[:8]}
        if reason:
            detail["reason"] = reason
        await self.record(
            event,
            session.principal,
            Outcome.ALLOW,
            channel=session.channel,
            source=session.source,
            detail=detail,
        )
        self.observer.sessions(session.channel, self.sessions.count(session.channel))
        for callback in list(session.on_close):
            try:
                callback("idle timeout" if timed_out else reason or "logged out")
            except Exception:  # a channel's hang-up must not break the guard
                log.exception("session close callback failed")

    def key_acceptable(self, channel: Channel, name: str, key: PublicKey) -> bool:
        """Return True if ``key`` is listed for ``name`` and the account is not locked on ``channel``.

        Side-effect free, for the SSH public-key *query* (before the client
        proves it holds the private key): a public key is public, so offering
        one must neither reset nor add to the failure count.  A refused key
        goes to :meth:`authenticate`, which records the failure.
        """
        if self.lockout.locked(name, channel, self._monotonic()):
            return False
        return check_credential(self._compiled.policy, self._credentials, name, key)

    def anonymous_session(self, channel: Channel, source: str) -> Session:
        """Return a session for the anonymous principal of an unauthenticated connection.

        Nothing is recorded and the session is not registered: an
        unauthenticated channel (plain Modbus TCP) has no login, and a client
        that reconnects in a loop must not write a login and a logout record
        per connection.  Every request on the session is still decided by
        :meth:`authorize` (refusals recorded, allows recorded or aggregated),
        so what anonymous may do is exactly what the policy's ``[anonymous]``
        section grants.  :meth:`close_session` ignores such a session; the
        channel simply drops it.
        """
        now = self._monotonic()
        return Session(secrets.token_hex(16), ANONYMOUS, PrincipalKind.ANONYMOUS, channel, source, now, now)

    def sessions_of(self, principal: str) -> Iterator[Session]:
        """The open sessions of ``principal`` (a snapshot: closing one while iterating is safe)."""
        return (session for session in self.sessions if session.principal == principal)

    def login_failed(self, channel: Channel) -> None:
        """Count a login that failed before the guard was asked (a TLS handshake) in the metrics."""
        self.observer.login_failure(channel)

    def unlock(self, user: str) -> bool:
        """Clear a user's login lockout on every channel (after an allowed ``user unlock``)."""
        return self.lockout.unlock(user)

    async def _session_decision(self, session: Session, request: Request) -> Decision:
        """The step every decision on a session shares: session checks, then the policy.

        A closed or idle session is refused (an idle one is closed as timed
        out); otherwise the compiled policy decides, narrowed to the session's
        roles when it has a role limit.  Nothing is recorded here.
        """
        now = self._monotonic()
        decision = decide(self._compiled, session, request, now)
        if session.closed:
            return decision
        if decision.reason is DenyReason.SESSION_CLOSED:  # found idle: it ends now
            await self.close_session(session, timed_out=True)
            return decision
        session.last_active = now
        return decision
