"""Real clients of the real-time routes: the app served by uvicorn on a free TCP port (in
this process, or as deployed: uvicorn workers in a process of their own), and WebSocket and
SSE clients that reach it over TCP, as a browser would."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
{%- if cookiecutter.use_sessions %}
from http.cookies import SimpleCookie
{%- endif %}
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from {{ cookiecutter.package_name }}.realtime.protocol import WebSocketProtocol

from tests.processes import PROJECT, Endpoint
from tests.redis_target import RedisTarget

ORIGIN = "http://app.test"
{%- if cookiecutter.use_sessions %}
PASSWORD = "correct horse battery staple"
{%- endif %}


@dataclass
class Served(Endpoint):
    """The app served in this process (its state, and its server's, can be looked at)."""

    app: FastAPI
    server: uvicorn.Server


@asynccontextmanager
async def served(app: FastAPI, port: int = 0) -> AsyncIterator[Served]:
    """The app behind uvicorn on 127.0.0.1 and `port` (0: a free one), lifespan included."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    port = listener.getsockname()[1]
    # As the Dockerfile and `make run` serve it.
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning",
        ws=WebSocketProtocol, ws_per_message_deflate=False,
        timeout_graceful_shutdown=1,  # open event streams would hold the shutdown forever
    )  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)
        yield Served(base_url=f"http://127.0.0.1:{port}", app=app, server=server)
    finally:
        server.should_exit = True
        await serving
        listener.close()


async def subscribers(target: RedisTarget | str, channel: str) -> int:
    """How many connections Redis delivers the channel to, over every master (`target`,
    or one standalone server's URL)."""
    urls = [target] if isinstance(target, str) else target.monitor_urls
    sharded = not isinstance(target, str) and target.topology == "cluster"
    total = 0
    for url in urls:
        async with Redis.from_url(url) as node:
            kind = "SHARDNUMSUB" if sharded else "NUMSUB"
            reply = await node.execute_command("PUBSUB", kind, channel)  # type: ignore[no-untyped-call, unused-ignore]
            total += int(reply[1])
    return total


async def publisher_process(
    workers: Sequence[Endpoint],
    headers: dict[str, str],
    topic: str,
    count: int,
    rate: float = 0,
    *options: str,
) -> list[str]:
    """`count` messages ({"n": 0}, {"n": 1}, ...) published from a process of its own
    (tests/realtime_publisher.py, which says what `options` there are) through each worker in
    turn, each retried until acknowledged: their positions."""
    python_path = os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")])
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.realtime_publisher", topic, str(count), "--rate", str(rate),
        *options, *(worker.base_url for worker in workers),
        env={**os.environ, "PUBLISHER_HEADERS": json.dumps(headers), "PYTHONPATH": python_path},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    output, errors = await process.communicate()
    assert process.returncode == 0, errors.decode()
    return output.decode().split()


@dataclass
class Visitor:
    """Someone using the service{% if cookiecutter.use_sessions %}: a registered, logged-in user{% endif %}."""

    served: Endpoint
    http: httpx.AsyncClient
    name: str
    headers: dict[str, str] = field(default_factory=dict)

    async def publish(self, topic: str, data: Any) -> str:
        answer = await self.http.post(
            f"/realtime/topics/{topic}/messages", json={"data": data}, headers=self.headers
        )
        assert answer.status_code == 202, answer.text
        position: str = answer.json()["id"]
        return position

    def websocket(self, origin: str = ORIGIN) -> AbstractAsyncContextManager[ClientConnection]:
        return visitor_socket(self.served, self.headers, origin)


@asynccontextmanager
async def visitor_socket(
    served: Endpoint, headers: dict[str, str], origin: str = ORIGIN
) -> AsyncIterator[ClientConnection]:
    """A WebSocket to `served` with these credentials (the same user on another worker)."""
    cookie = {"cookie": headers["cookie"]} if "cookie" in headers else {}
    async with connect(served.ws_url, origin=Origin(origin), additional_headers=cookie) as ws:
        yield ws


@asynccontextmanager
async def visitor(served: Endpoint, name: str | None = None) -> AsyncIterator[Visitor]:
    name = name or f"user-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=served.base_url) as http:
        found = Visitor(served, http, name)
{%- if cookiecutter.use_sessions %}
        credentials = {"username": name, "password": PASSWORD}
        await http.post("/auth/register", json=credentials)
        login = await http.post("/auth/login", json=credentials)
        assert login.status_code == 200, login.text
        cookie = next(iter(SimpleCookie(login.headers["set-cookie"]).values()))
        found.headers = {"cookie": f"{cookie.key}={cookie.value}",
                         "x-csrf-token": login.json()["csrf_token"]}  # fmt: skip
        http.cookies.clear()
{%- endif %}
        yield found


async def subscribed_sockets(
    stack: AsyncExitStack,
    workers: Sequence[Endpoint],
    headers: dict[str, str],
    topic: str,
    each: int = 1,
) -> list[ClientConnection]:
    """`each` WebSockets on each worker with these credentials, subscribed to `topic` (and
    closed with `stack`)."""
    sockets = []
    for worker in workers:
        for _ in range(each):
            ws = await stack.enter_async_context(visitor_socket(worker, headers))
            await subscribe(ws, topic)
            sockets.append(ws)
    return sockets


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until `condition()` holds (checked every 20 ms), at most `within` seconds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - state of the app, not an event of ours
            await asyncio.sleep(0.02)


async def subscribe(ws: ClientConnection, topic: str, since: str | None = None) -> None:
    """Subscribe, and wait for the server's confirmation."""
    frame: dict[str, Any] = {"type": "subscribe", "topic": topic}
    if since is not None:
        frame["since"] = since
    await ws.send(json.dumps(frame))
    (confirmation,) = await frames(ws, 1)
    assert confirmation == {"type": "subscribed", "topic": topic}, confirmation


async def frames(ws: ClientConnection, count: int, within: float = 5.0) -> list[dict[str, Any]]:
    """The next `count` frames the server sends."""
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while len(received) < count:
            received.append(json.loads(await ws.recv()))
    return received


async def frames_until(
    ws: ClientConnection, last: Callable[[dict[str, Any]], bool], within: float = 60.0
) -> list[dict[str, Any]]:
    """The frames the server sends, up to and including the first for which `last` holds."""
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while not received or not last(received[-1]):
            received.append(json.loads(await ws.recv()))
    return received


@asynccontextmanager
async def sse(
    served: Served, topic: str, headers: dict[str, str]
) -> AsyncIterator[AsyncIterator[dict[str, str]]]:
    """GET /realtime/sse?topic=...: once the answer has begun (the subscription is in
    place), its events, each as a dict of its fields."""
    async with (
        # No read timeout: an event stream is quiet between events (callers bound the wait).
        httpx.AsyncClient(base_url=served.base_url, timeout=None) as http,  # noqa: S113
        http.stream("GET", "/realtime/sse", params={"topic": topic}, headers=headers) as answer,
    ):
        assert answer.status_code == 200, await answer.aread()
        yield _events(answer)


async def _events(answer: httpx.Response) -> AsyncIterator[dict[str, str]]:
    current: dict[str, str] = {}
    async for line in answer.aiter_lines():
        if line.startswith(":"):
            current.setdefault("comment", line)
        elif line:
            name, _, value = line.partition(": ")
            current[name] = value
        elif current:
            yield current
            current = {}


async def take(
    events: AsyncIterator[dict[str, str]], count: int, within: float = 5.0
) -> list[dict[str, str]]:
    """The next `count` events that are not heartbeats."""
    taken: list[dict[str, str]] = []
    async with asyncio.timeout(within):
        async for event in events:
            if "data" in event:
                taken.append(event)
            if len(taken) >= count:
                break
    return taken
