"""Throwaway redis-server processes for the test-suite: free port, temp dir, stopped after.

The suite never talks to a Redis it did not start unless TEST_REDIS_URL says so, and
it never flushes one: every test writes under its own key prefix instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def send_command(
    port: int, *words: str, auth: tuple[str, str] | None = None, timeout: float = 2.0
) -> bytes:
    """One RESP command over a raw socket (after AUTH user password when `auth` is given):
    enough to ask a server how it is doing without a client library."""
    commands: list[tuple[str, ...]] = []
    if auth is not None:
        commands.append(("AUTH", *auth))
    commands.append(words)
    payload = b"".join(
        b"*%d\r\n" % len(command)
        + b"".join(b"$%d\r\n%s\r\n" % (len(word.encode()), word.encode()) for word in command)
        for command in commands
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(payload)
        reply = b""
        try:
            while reply.count(b"\r\n") < len(commands):
                chunk = connection.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except TimeoutError:
            pass
        return reply


def wait_until_ready(
    port: int, process: subprocess.Popen[bytes] | None, deadline_seconds: float = 10.0
) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"redis-server on port {port} exited with {process.returncode}")
        try:
            if b"PONG" in send_command(port, "PING", timeout=0.5) or b"NOAUTH" in send_command(
                port, "PING", timeout=0.5
            ):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(
        f"redis-server on port {port} did not answer PING within {deadline_seconds} s"
    )


@dataclass
class RedisServer:
    """A redis-server this test-suite owns: it may stop, kill and restart it."""

    directory: Path
    extra_args: Sequence[str] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # (user, password) for looking inside, when the server has users.
    auth: tuple[str, str] | None = None
    # A command that starts redis-server its own way (redis/entrypoint.sh with the
    # project's redis.conf); the suite still chooses port, address and directory.
    launcher: Sequence[str] = ()
    env: Mapping[str, str] | None = None

    @property
    def url(self) -> str:
        credentials = f"{self.auth[0]}:{self.auth[1]}@" if self.auth else ""
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        assert REDIS_SERVER is not None
        if self.launcher:
            return [
                *self.launcher,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--daemonize", "no",
                "--logfile", str(self.directory / "redis.log"),
                *self.extra_args,
            ]  # fmt: skip
        return [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, env=dict(self.env) if self.env else None
        )
        wait_until_ready(self.port, self.process)
        return self

    def stop(self) -> None:
        """Clean shutdown (SHUTDOWN NOSAVE); kill if it does not go."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def terminate(self) -> None:
        """Ask to stop (SIGTERM) without waiting: see stop_all."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open but nothing answers."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


def stop_all(servers: Sequence[RedisServer]) -> None:
    """Stop several servers at once instead of one after the other."""
    for server in servers:
        server.terminate()
    for server in servers:
        server.stop()


@contextmanager
def running_server(directory: Path, extra_args: Sequence[str] = ()) -> Iterator[RedisServer]:
    server = RedisServer(directory=directory, extra_args=extra_args).start()
    try:
        yield server
    finally:
        server.stop()


def external_url() -> str | None:
    """A Redis the environment provides for tests (e.g. a CI service container)."""
    return os.environ.get("TEST_REDIS_URL") or None
