"""A bounded client for the QEMU guest agent: the rig's way into its guest as root.

meterd is the guest's SSH server, so the rig runs its own commands (systemctl,
journalctl, the install steps) through the guest agent on a virtio serial port.
Standard library only: the rig script runs it with any Python 3.

    rig_qga.py SOCKET ping [--timeout S]
    rig_qga.py SOCKET exec [--timeout S] -- COMMAND [ARG...]

``exec`` prints the command's standard output and error and exits with its status
(124 when it outlasts the timeout, 125 when the agent cannot be reached).
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

EXIT_TIMEOUT = 124
EXIT_AGENT = 125


class AgentError(Exception):
    """The guest agent could not be reached or answered with an error."""


@dataclass(frozen=True, slots=True)
class Result:
    """A finished guest command.

    Attributes:
        status: its exit status (128 + signal number when a signal ended it).
        stdout: its standard output.
        stderr: its standard error.
    """

    status: int
    stdout: bytes
    stderr: bytes


class Agent:
    """One connection to the guest agent's Unix socket, every read bounded."""

    def __init__(self, path: str, timeout: float) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._buf = b""
        try:
            self._sock.connect(path)
        except OSError as e:
            self._sock.close()
            raise AgentError(f"cannot connect to {path}: {e}") from e

    def close(self) -> None:
        """Close the connection."""
        self._sock.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise AgentError("the guest agent closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        line = line.strip().lstrip(b"\xff")
        if not line:
            return self._line()
        answer: dict[str, Any] = json.loads(line)
        return answer

    def sync(self, ident: int) -> None:
        """Discard anything a previous client left unread (the agent's sync handshake)."""
        # 0xFF resets the agent's parser; guest-sync-delimited echoes the id after one.
        self._sock.sendall(b"\xff")
        self._sock.sendall(
            json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": ident}}).encode() + b"\n"
        )
        while True:
            answer = self._line()
            if answer.get("return") == ident:
                return

    def call(self, command: str, **arguments: object) -> Any:
        """Run one agent command and return its ``return`` value."""
        message: dict[str, object] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self._sock.sendall(json.dumps(message).encode() + b"\n")
        answer = self._line()
        if "error" in answer:
            raise AgentError(f"{command}: {answer['error'].get('desc', answer['error'])}")
        return answer.get("return")


def connect(path: str, timeout: float) -> Agent:
    """Connect and synchronise, retrying until ``timeout`` (the guest may still be booting)."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            agent = Agent(path, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
        except AgentError as e:
            last = str(e)
            time.sleep(1)
            continue
        try:
            agent.sync(int(time.monotonic() * 1000) % 2**31)
        except (OSError, AgentError, ValueError) as e:
            agent.close()
            last = f"no answer: {e}"
            time.sleep(1)
            continue
        return agent
    raise AgentError(f"guest agent at {path} not ready within {timeout:.0f} s ({last})")


def run(path: str, argv: list[str], timeout: float, stdin: bytes | None = None) -> Result:
    """Run ``argv`` in the guest as root and wait at most ``timeout`` seconds.

    Raises:
        AgentError: the agent is unreachable, or the command outlasted ``timeout``.
    """
    deadline = time.monotonic() + timeout
    with connect(path, min(timeout, 30.0)) as agent:
        arguments: dict[str, object] = {"path": argv[0], "arg": argv[1:], "capture-output": True}
        if stdin is not None:
            arguments["input-data"] = base64.b64encode(stdin).decode()
        pid = agent.call("guest-exec", **arguments)["pid"]
        delay = 0.05
        while True:
            status = agent.call("guest-exec-status", pid=pid)
            if status.get("exited"):
                break
            if time.monotonic() > deadline:
                raise AgentError(f"{' '.join(argv)}: still running after {timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    code = status.get("exitcode")
    if code is None:
        code = 128 + int(status.get("signal", 0))
    return Result(
        status=int(code),
        stdout=base64.b64decode(status.get("out-data", "")),
        stderr=base64.b64decode(status.get("err-data", "")),
    )


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="rig_qga.py")
    parser.add_argument("socket")
    parser.add_argument("action", choices=["ping", "exec"])
    parser.add_argument("--timeout", type=float, default=60.0)
    argv = sys.argv[1:] if argv is None else argv
    command: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1 :]
    args = parser.parse_args(argv)
    try:
        if args.action == "ping":
            connect(args.socket, args.timeout).close()
            return 0
        if not command:
            parser.error("exec needs a command after --")
        result = run(args.socket, command, args.timeout)
    except AgentError as e:
        print(f"rig_qga: {e}", file=sys.stderr)
        return EXIT_TIMEOUT if "still running" in str(e) else EXIT_AGENT
    sys.stdout.buffer.write(result.stdout)
    sys.stderr.buffer.write(result.stderr)
    return result.status


if __name__ == "__main__":
    sys.exit(main())
