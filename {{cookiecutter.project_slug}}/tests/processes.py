"""The service as deployed, in a process of its own: uvicorn started from the environment
variables its settings make, on a free TCP port."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from pydantic import SecretStr

from {{ cookiecutter.package_name }}.settings import Settings

from tests.redis_servers import free_port

PROJECT = Path(__file__).resolve().parents[1]


@dataclass
class Endpoint:
    """Where the service answers."""

    base_url: str
{%- if cookiecutter.use_realtime %}

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/realtime/ws"
{%- endif %}


@dataclass
class Spawned(Endpoint):
    """The service in a process of its own."""

    pid: int

    def cpu_seconds(self) -> float:
        """The CPU time the process has used so far, user and system (Linux: /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def environment_of(settings: Settings) -> dict[str, str]:
    """`settings` as the environment variables a server process reads them from."""
    environment = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list):
            value = ",".join(str(item) for item in value)
        environment[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return environment


@asynccontextmanager
async def server_process(
    settings: Settings,
    *options: str,
    environment: Mapping[str, str] | None = None,
    stderr: IO[bytes] | None = None,
) -> AsyncIterator[Spawned]:
    """The service as deployed: uvicorn in a process of its own (one worker, as the
    Dockerfile runs it, unless `options` say `--workers`), configured by its environment
    (`settings`, then `environment`), on a free port; from when it answers ready until the
    block ends. `options` go to uvicorn; its log lines go to `stderr` (the test's own unless
    given)."""
    port = free_port()
    python_path = os.pathsep.join([str(PROJECT / "src"), os.environ.get("PYTHONPATH", "")])
    # A setting left unset is unset in the process too, whatever this process's environment.
    fields = type(settings).model_fields
    unset = {name.upper() for name in fields if getattr(settings, name) is None}
    inherited = {name: value for name, value in os.environ.items() if name not in unset}
    variables = {**inherited, **environment_of(settings), **(environment or {})}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "{{ cookiecutter.package_name }}.main:create_app",
        "--factory", "--host", "127.0.0.1", "--port", str(port),
{%- if cookiecutter.use_realtime %}
        "--ws", "{{ cookiecutter.package_name }}.realtime.protocol:WebSocketProtocol",
        "--ws-per-message-deflate", "false",
{%- endif %}
        "--timeout-graceful-shutdown", "1", "--no-access-log", "--log-level", "warning",
        *options, env={**variables, "PYTHONPATH": python_path}, stderr=stderr,
    )  # fmt: skip
    endpoint = Spawned(f"http://127.0.0.1:{port}", process.pid)
    try:
        async with httpx.AsyncClient(base_url=endpoint.base_url) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await http.get("/health/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not become ready ({process.returncode=})")
                await asyncio.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()
