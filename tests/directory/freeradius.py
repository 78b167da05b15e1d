"""A real FreeRADIUS for tests: ``freeradius -X`` on 127.0.0.1 with a configuration made per run.

Everything lives in one temporary directory: radiusd.conf, a dictionary with
meterd's vendor attributes, a users file with generated passwords and a
generated shared secret.  The server requires a Message-Authenticator on
every request from its one client (127.0.0.1) and signs every reply with one,
accepts and rejects alike.  Use :func:`freeradius` (a context manager) or the
``radius_server`` fixture (one server per test module)::

    from tests.directory.freeradius import RadiusUser, freeradius, radius_server  # noqa: F401
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from meterd.directory.radius import RadiusSettings, radius_settings

VENDOR_ID = 50316
ROLE_ATTRIBUTE = 1
SCOPE_ATTRIBUTE = 2
READY_TIMEOUT = 20.0
_BINARY = next((p for p in ("/usr/sbin/freeradius", "/usr/sbin/radiusd") if os.path.exists(p)), "")


@dataclass(frozen=True)
class RadiusUser:
    """A user in the server's users file.

    Attributes:
        name: The login name.
        password: Generated unless given.
        classes: ``Class`` values of the Access-Accept (directory groups).
        filter_ids: ``Filter-Id`` values (directory groups, the other way).
        roles: ``Meterd-Role`` values (vendor 50316, attribute 1).
        scope: ``Meterd-Scope`` (vendor 50316, attribute 2), or None.
    """

    name: str
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    classes: tuple[str, ...] = ()
    filter_ids: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    scope: str | None = None


DEFAULT_USERS = (
    RadiusUser(
        "rad-operator", classes=("grid-operators", "metering"), filter_ids=("ops",), roles=("operator",)
    ),
    RadiusUser(
        "rad-engineer", classes=("grid-engineers",), roles=("engineer", "viewer"), scope="/modbus/unit/1"
    ),
    RadiusUser("rad-nogroup"),
)


@dataclass
class FreeRadius:
    """A running server.

    Attributes:
        directory: Its configuration and log directory.
        port: The UDP authentication port on 127.0.0.1.
        secret: The shared secret.
        secret_file: The secret in a 0600 file, as ``[directory.radius] secret_file`` wants it.
        users: The users file's users by name.
        log_file: ``freeradius -X`` output (read it when a test fails).
        process: The server process.
    """

    directory: Path
    port: int
    secret: bytes
    secret_file: Path
    users: dict[str, RadiusUser]
    log_file: Path
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as ``servers`` lists it."""
        return f"{self.host}:{self.port}"

    @property
    def uri(self) -> str:
        """``radius://127.0.0.1:PORT``, as identities and messages name it."""
        return f"radius://{self.address}"

    def table(self, **overrides: Any) -> dict[str, Any]:
        """A ``[directory.radius]`` table for this server (``overrides`` added or replaced)."""
        return {"servers": [self.address], "secret_file": str(self.secret_file), **overrides}

    def settings(self, **overrides: Any) -> RadiusSettings:
        """:class:`RadiusSettings` for this server, validated as ``meterd.toml`` would be."""
        return radius_settings(self.table(**overrides), self.directory)

    def pause(self) -> None:
        """Stop the process (SIGSTOP): the port stays bound and nothing answers."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again."""
        self.process.send_signal(signal.SIGCONT)

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_file.read_text(errors="replace")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _quote(text: str) -> str:
    if any(c in text for c in '"\\\n\r'):
        raise ValueError(f"no quotes, backslashes or newlines in test values: {text!r}")
    return f'"{text}"'


def _users_file(users: Sequence[RadiusUser]) -> str:
    entries = []
    for user in users:
        reply = [f"Class += {_quote(c)}" for c in user.classes]
        reply += [f"Filter-Id += {_quote(f)}" for f in user.filter_ids]
        reply += [f"Meterd-Role += {_quote(r)}" for r in user.roles]
        if user.scope is not None:
            reply.append(f"Meterd-Scope := {_quote(user.scope)}")
        line = f"{_quote(user.name)} Cleartext-Password := {_quote(user.password)}\n"
        if reply:
            line += "\t" + ",\n\t".join(reply) + "\n"
        entries.append(line)
    return "\n".join(entries)


_DICTIONARY = f"""\
$INCLUDE /usr/share/freeradius/dictionary
VENDOR meterd {VENDOR_ID}
BEGIN-VENDOR meterd
ATTRIBUTE Meterd-Role {ROLE_ATTRIBUTE} string
ATTRIBUTE Meterd-Scope {SCOPE_ATTRIBUTE} string
END-VENDOR meterd
"""

# Every reply carries a Message-Authenticator: 3.2.1 computes it when the reply lists one.
_RADIUSD_CONF = """\
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {dir}
raddbdir = {dir}
radacctdir = {dir}
name = freeradius
confdir = {dir}
modconfdir = {dir}
run_dir = {dir}
db_dir = {dir}
libdir = /usr/lib/freeradius
pidfile = {dir}/radiusd.pid
max_request_time = 5
cleanup_delay = 1
max_requests = 1024
hostname_lookups = no
log {{
    destination = stdout
    auth = yes
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}
proxy_requests = no
client meter {{
    ipaddr = 127.0.0.1
    proto = udp
    secret = {secret}
    require_message_authenticator = yes
}}
thread pool {{
    start_servers = 1
    max_servers = 4
    min_spare_servers = 1
    max_spare_servers = 2
    max_requests_per_server = 0
}}
modules {{
    files {{
        filename = {dir}/users
    }}
    pap {{
    }}
}}
server default {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {port}
    }}
    authorize {{
        files
        pap
    }}
    authenticate {{
        Auth-Type PAP {{
            pap
        }}
    }}
    post-auth {{
        update reply {{
            Message-Authenticator := 0x00
        }}
        Post-Auth-Type REJECT {{
            update reply {{
                Message-Authenticator := 0x00
            }}
        }}
    }}
}}
"""


@contextmanager
def freeradius(
    directory: Path, users: Sequence[RadiusUser] = DEFAULT_USERS, *, secret: str | None = None
) -> Iterator[FreeRadius]:
    """Run FreeRADIUS on 127.0.0.1 (a free port) with ``users`` while the block runs.

    Args:
        directory: An empty directory for the configuration and log (a tmp dir).
        users: The users file's users.
        secret: The shared secret (generated when None; pass one to make a server pair).

    Raises:
        RuntimeError: If the server does not report ready within 20 s (its log is in the message).
    """
    if not _BINARY:
        pytest.fail("freeradius is not installed (make system-deps installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    secret = secret or secrets.token_urlsafe(24)
    secret_file = directory / "radius.secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    (directory / "dictionary").write_text(_DICTIONARY)
    (directory / "users").write_text(_users_file(users))
    # A free port is only free until the server binds it: another process may take it first.
    for _ in range(3):
        server = _start(directory, secret, secret_file, users)
        try:
            _wait_ready(server)
        except _PortTakenError:
            _stop(server)
            continue
        except BaseException:
            _stop(server)
            raise
        break
    else:
        raise RuntimeError(f"freeradius found no free UDP port in three tries:\n{server.log()[-2000:]}")
    try:
        yield server
    finally:
        _stop(server)


class _PortTakenError(RuntimeError):
    pass


def _start(directory: Path, secret: str, secret_file: Path, users: Sequence[RadiusUser]) -> FreeRadius:
    port = free_udp_port()
    (directory / "radiusd.conf").write_text(
        _RADIUSD_CONF.format(dir=directory, secret=_quote(secret), port=port)
    )
    log_file = directory / "radiusd.log"
    with log_file.open("wb") as out:
        process = subprocess.Popen(
            [_BINARY, "-X", "-d", str(directory), "-n", "radiusd"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return FreeRadius(
        directory, port, secret.encode(), secret_file, {u.name: u for u in users}, log_file, process
    )


def _stop(server: FreeRadius) -> None:
    server.resume()
    server.process.terminate()
    try:
        server.process.wait(5)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def _wait_ready(server: FreeRadius) -> None:
    end = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < end:
        text = server.log()
        if "Ready to process requests" in text:
            return
        if server.process.poll() is not None:
            if "Failed binding to" in text:
                raise _PortTakenError(text[-2000:])
            break
        time.sleep(0.05)
    raise RuntimeError(f"freeradius did not start (exit {server.process.poll()}):\n{server.log()[-4000:]}")


@pytest.fixture(scope="module")
def radius_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreeRadius]:
    """One FreeRADIUS with :data:`DEFAULT_USERS` for a test module."""
    with freeradius(tmp_path_factory.mktemp("freeradius")) as server:
        yield server
