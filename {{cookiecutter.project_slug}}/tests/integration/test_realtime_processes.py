"""Real-time as deployed: two uvicorn server processes (two workers, or two containers),
WebSocket clients over TCP, and a publisher in a third process. Every client gets every
acknowledged message, in order and once, across the workers and through the death of Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from {{ cookiecutter.package_name }}.realtime.topics import Topic
from {{ cookiecutter.package_name }}.settings import Settings

from tests.processes import PROJECT, Endpoint, server_process
from tests.realtime_clients import (
    frames_until,
    publisher_process,
    subscribed_sockets,
    subscribers,
    visitor,
)
from tests.redis_servers import REDIS_SERVER, RedisServer
from tests.redis_target import RedisTarget
from tests.service import SettingsFactory

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def two_workers(settings: Settings) -> AsyncIterator[list[Endpoint]]:
    """Two server processes on one Redis, each with its own hub."""
    async with server_process(settings) as first, server_process(settings) as second:
        yield [first, second]


async def logged_in(stack: AsyncExitStack, worker: Endpoint) -> dict[str, str]:
    """The headers of a logged-in user (the session works on every worker)."""
    user = await stack.enter_async_context(visitor(worker))
    return user.headers


def listen(
    sockets: list[ClientConnection], last_n: int
) -> list[asyncio.Task[list[dict[str, Any]]]]:
    """Each socket's frames until the message {"n": last_n}, read as they come."""

    def is_last(frame: dict[str, Any]) -> bool:
        return frame.get("data") == {"n": last_n}

    return [asyncio.create_task(frames_until(ws, is_last)) for ws in sockets]


def offsets(frames: list[dict[str, Any]]) -> list[int]:
    return [int(frame["id"].split(":")[1]) for frame in frames if frame["type"] == "message"]


async def test_every_client_on_both_worker_processes_gets_all_1000_messages_in_order(
    realtime_settings: SettingsFactory, redis_target: RedisTarget
) -> None:
    settings = realtime_settings()
    async with two_workers(settings) as workers, AsyncExitStack() as stack:
        headers = await logged_in(stack, workers[0])
        sockets = await subscribed_sockets(stack, workers, headers, "fanout", each=100)
        listening = listen(sockets, last_n=999)

        published = await publisher_process(workers, headers, "fanout", 1000)

        received = await asyncio.gather(*listening)
        channel = Topic.make(settings.redis_key_prefix, "fanout").channel
        assert await subscribers(redis_target, channel) == 2  # one per worker, not per client

    for frames in received:
        assert [frame["id"] for frame in frames] == published


@pytest.mark.faults
async def test_no_acknowledged_message_is_lost_or_repeated_when_redis_is_killed_mid_stream(
    realtime_settings: SettingsFactory, durable_redis_server: RedisServer
) -> None:
    # appendfsync always: what Redis acknowledged is on disk before the answer.
    settings = realtime_settings(redis_url=durable_redis_server.url, redis_topology="standalone")
    async with two_workers(settings) as workers, AsyncExitStack() as stack:
        headers = await logged_in(stack, workers[0])
        sockets = await subscribed_sockets(stack, workers, headers, "survives", each=10)
        listening = listen(sockets, last_n=399)
        publishing = asyncio.create_task(
            publisher_process(workers, headers, "survives", 400, rate=100)
        )
        await asyncio.sleep(1.5)
        durable_redis_server.kill()  # SIGKILL, mid-stream
        await asyncio.sleep(0.5)
        await asyncio.to_thread(durable_redis_server.start)

        published = await publishing
        received = await asyncio.gather(*listening)

    acknowledged = [int(position.split(":")[1]) for position in published]
    for frames in received:
        assert all(frame["type"] == "message" for frame in frames)  # no resync: nothing lost
        got = offsets(frames)
        assert got == sorted(set(got))  # in order, and each once
        assert set(acknowledged) <= set(got)


@pytest.mark.faults
async def test_with_no_persistence_every_client_gets_a_resync_within_one_probe_interval(
    realtime_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    settings = realtime_settings(redis_url=own_redis_server.url, redis_topology="standalone")
    async with two_workers(settings) as workers, AsyncExitStack() as stack:
        headers = await logged_in(stack, workers[0])
        sockets = await subscribed_sockets(stack, workers, headers, "forgotten", each=10)
        listening = listen(sockets, last_n=9)
        await publisher_process(workers, headers, "forgotten", 10)
        await asyncio.gather(*listening)

        own_redis_server.kill()  # and with it, every topic's history
        await asyncio.to_thread(own_redis_server.start)
        restarted = time.monotonic()
        resyncs = [
            asyncio.create_task(frames_until(ws, lambda frame: frame["type"] == "resync"))
            for ws in sockets
        ]
        for frames in await asyncio.gather(*resyncs):
            assert frames == [{"type": "resync", "topic": "forgotten"}]
        waited = time.monotonic() - restarted

    assert waited < settings.realtime_probe_seconds


@pytest.mark.skipif(REDIS_SERVER is None, reason="the benchmark starts its own redis-server")
def test_the_latency_benchmark_prints_redis_alone_and_the_service_side_by_side() -> None:
    bench = PROJECT / "bench" / "bench_realtime.py"
    command = [sys.executable, str(bench), "--clients", "4", "--rates", "50", "--seconds", "1",
               "--few", "2", "--slow-rate", "50", "--rounds", "1"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[1].startswith("Redis alone, 50/s")
    assert lines[2].startswith("service, 50/s (4 clients)")
    assert "arrived 200/200" in lines[2]  # 50 messages to each of 4 clients
    assert lines[3].startswith("service, 50/s (2 clients)")
    assert lines[4].startswith("service, 50/s (2 + 1 stalled: ")
    assert "arrived 100/100" in lines[4]  # the others miss nothing
