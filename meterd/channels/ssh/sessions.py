"""The guard sessions of SSH session channels: opened within the listener's limit, then run.

A shell or command needs ``terminal_access`` (a guard session on the ``ssh``
channel); ``meterd-policy`` commands go to the daemon's policy service.  A
session's opening is recorded by the guard, once per login (see
:mod:`~meterd.channels.ssh.connection`).
"""

from __future__ import annotations

import logging
import shlex
from typing import TYPE_CHECKING

import asyncssh

from meterd.channels.ssh.connection import MeterSSHServer, source_of
from meterd.channels.ssh.terminal import SessionStreams, SessionTerminal
from meterd.guard import Session
from meterd.policy.permissions import Permission
from meterd.policy.request import Channel, Decision, Outcome, Request
from meterd.runtime import Runtime
from meterd.shell.terminal import EXIT_DENIED, EXIT_USAGE

if TYPE_CHECKING:
    from meterd.channels.ssh.listener import SshListener

log = logging.getLogger(__name__)


async def open_guard_session(
    listener: SshListener,
    chan: asyncssh.SSHServerChannel[str] | asyncssh.SSHServerChannel[bytes],
    channel: Channel,
    any_of: tuple[Permission, ...],
    resource: str,
) -> Session | Decision:
    """Open the guard session of one SSH session channel, within the listener's session limit."""
    conn = chan.get_connection()
    user = conn.get_extra_info("username", "")
    source = source_of(conn)
    runtime: Runtime = listener.runtime
    owner = conn.get_owner()
    server = owner if isinstance(owner, MeterSSHServer) else None
    if server is not None:
        server.login_recorded()
    # Counted before the first await: requests arriving together (channels of one
    # connection, or many clients) must not all pass while the first is recorded.
    if len(listener.sessions) + listener.opening >= listener.config.max_sessions:
        await runtime.guard.refuse(user, channel, source, {"reason": "too_many_sessions"}, kind="login")
        return Decision(
            Request(user, any_of[0], resource, channel, source), Outcome.DENY, None, "too many sessions"
        )
    listener.opening += 1
    try:
        opened = await runtime.guard.open_session(user, channel, source, any_of, resource)
    finally:
        listener.opening -= 1
    if isinstance(opened, Session):
        listener.sessions.add(opened)
        opened.on_close.append(lambda _reason: chan.close())
        if server is not None:
            server.watch.session_opened()
            opened.on_close.append(lambda _reason: server.watch.session_closed())
    return opened


async def close_guard_session(listener: SshListener, session: Session, reason: str) -> None:
    """Close a session opened by :func:`open_guard_session`."""
    listener.sessions.discard(session)
    await listener.runtime.guard.close_session(session, reason=reason)


POLICY_COMMAND = "meterd-policy"
MAX_POLICY_PAYLOAD = 4 * 1024 * 1024


async def _policy_command(runtime: Runtime, session: Session, streams: SessionStreams) -> int:
    """Hand ``meterd-policy ARGS`` to the daemon's policy service, with stdin (to EOF) as payload.

    The service decides what the session may do; without one the command does not exist here.
    """
    if runtime.policies is None:
        streams.stderr.write(f"{POLICY_COMMAND}: not available on this meter\n")
        return EXIT_USAGE
    try:
        argv = shlex.split(streams.command or "")[1:]
    except ValueError as e:
        streams.stderr.write(f"{POLICY_COMMAND}: {e}\n")
        return EXIT_USAGE
    payload = await streams.stdin.read(MAX_POLICY_PAYLOAD + 1)
    if len(payload) > MAX_POLICY_PAYLOAD:
        streams.stderr.write(f"{POLICY_COMMAND}: input larger than {MAX_POLICY_PAYLOAD} bytes\n")
        return EXIT_USAGE
    status, output = await runtime.policies.run(runtime.guard, session, argv, payload.encode())
    # Lines of text, like every other answer: the caller's prompt must not follow on the last one.
    streams.stdout.write(output if not output or output.endswith("\n") else output + "\n")
    return status


async def run_session(listener: SshListener, streams: SessionStreams) -> None:
    """Serve one shell, command or refused subsystem on a session channel."""
    if streams.subsystem:
        streams.stderr.write(f"subsystem {streams.subsystem[:32]!r} is not available\n")
        streams.exit(EXIT_DENIED)
        return
    opened = await open_guard_session(
        listener, streams.channel, Channel.SSH, (Permission.TERMINAL_ACCESS,), "/"
    )
    if not isinstance(opened, Session):
        streams.stderr.write(f"denied: {opened.request.permission.value} ({opened.detail or 'refused'})\n")
        streams.exit(EXIT_DENIED)
        return
    from meterd.shell import MeterShell  # noqa: PLC0415 - on first use (see meterd.shell)

    shell = MeterShell(listener.runtime, opened, SessionTerminal(streams))
    status = EXIT_DENIED
    reason = ""
    try:
        if streams.command is not None and streams.command.split(maxsplit=1)[:1] == [POLICY_COMMAND]:
            status = await _policy_command(listener.runtime, opened, streams)
        elif streams.command is not None:
            status = await shell.execute(streams.command)
        else:
            await shell.run()
            status = 0
    except (asyncssh.Error, OSError, ConnectionError) as e:
        reason = "disconnected"
        log.info("ssh session of %s ended: %s", opened.principal, e)
    except Exception:  # a bug in a command must end the session, never the listener
        reason = "internal error"
        log.exception("ssh session of %s failed", opened.principal)
    finally:
        # Exit status first: the guard's close callback hangs the channel up.
        if not streams.channel.is_closing():
            streams.exit(status)
        await close_guard_session(listener, opened, reason or "logged out")
