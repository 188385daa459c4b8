"""The Redis client against a real server: pool, timeouts, no re-sent commands, readiness."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from {{ cookiecutter.package_name }}.redis_client import build_client, close, run_together

from tests.redis_servers import RedisServer
from tests.redis_target import RedisTarget
from tests.service import SettingsFactory, serve

pytestmark = pytest.mark.anyio

# What a loaded 2-core machine may add to a deadline before the answer is in.
SCHEDULING_SLACK_SECONDS = 0.4


async def test_readiness_is_ok_with_a_real_redis(real_settings: SettingsFactory) -> None:
    async with serve(real_settings()) as service:
        response = await service.client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["redis"]["topology"] in {"standalone", "sentinel", "cluster"}


async def test_readiness_turns_503_within_its_deadline_once_redis_stops(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    async with serve(make_settings(redis_url=own_redis_server.url)) as service:
        assert (await service.client.get("/health/ready")).status_code == 200
        own_redis_server.stop()
        started = time.perf_counter()
        response = await service.client.get("/health/ready")
        elapsed = time.perf_counter() - started
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"
    assert response.json()["error"]["message"] == "Redis is unreachable."
    assert elapsed < service.settings.health_timeout_seconds  # refused at once


async def test_readiness_is_503_at_its_deadline_when_redis_hangs(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    async with serve(make_settings(redis_url=own_redis_server.url)) as service:
        assert (await service.client.get("/health/ready")).status_code == 200
        own_redis_server.pause()
        try:
            started = time.perf_counter()
            response = await service.client.get("/health/ready")
            elapsed = time.perf_counter() - started
        finally:
            own_redis_server.resume()
    assert response.status_code == 503
    assert "did not answer within" in response.json()["error"]["message"]
    assert elapsed < service.settings.health_timeout_seconds + SCHEDULING_SLACK_SECONDS


async def test_a_timed_out_command_is_not_sent_again(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    # The server freezes for longer than the socket timeout and then recovers: a client
    # that retried would reconnect and send the INCR a second time (counter 2).
    settings = make_settings(redis_url=own_redis_server.url, redis_socket_timeout_seconds=0.2)
    client = build_client(settings)
    key = f"{settings.redis_key_prefix}:counter"
    try:
        await client.ping()
        own_redis_server.pause()
        asyncio.get_running_loop().call_later(0.35, own_redis_server.resume)
        with pytest.raises(RedisTimeoutError):
            await client.incr(key)
        await asyncio.sleep(0.6)
        admin = Redis.from_url(own_redis_server.url)
        try:
            assert await admin.get(key) == b"1"
        finally:
            await admin.aclose()
    finally:
        own_redis_server.resume()
        await close(client)


async def test_a_full_pool_makes_callers_wait_instead_of_failing(
    real_settings: SettingsFactory, redis_target: RedisTarget
) -> None:
    settings = real_settings(redis_max_connections=2, redis_pool_timeout_seconds=5)
    client = build_client(settings)
    key = f"{settings.redis_key_prefix}:waiters"
    try:
        await asyncio.gather(*(client.incr(key) for _ in range(50)))
        assert await client.get(key) == b"50"
        await client.delete(key)
    finally:
        await close(client)


async def test_64_callers_on_50_connections_each_wait_less_than_the_pool_timeout(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    """More callers than connections, each holding its connection for 20 ms at a time: every
    call is served, and none waits as long as the pool timeout."""
    settings = make_settings(
        redis_url=own_redis_server.url,
        redis_max_connections=50,
        redis_pool_timeout_seconds=1.0,
    )
    client = build_client(settings)
    idle_key = f"{settings.redis_key_prefix}:never-filled"

    async def caller(rounds: int) -> list[float]:
        durations = []
        for _ in range(rounds):
            started = time.perf_counter()
            await client.blpop([idle_key], timeout=0.02)  # holds a connection for 20 ms
            durations.append(time.perf_counter() - started)
        return durations

    try:
        await asyncio.gather(*(caller(1) for _ in range(64)))  # opens the 50 connections
        per_caller = await asyncio.gather(*(caller(10) for _ in range(64)))
    finally:
        await close(client)
    longest = max(max(durations) for durations in per_caller)
    assert longest < settings.redis_pool_timeout_seconds


async def test_after_a_restart_no_dead_connection_is_handed_out(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    """Connections pooled before Redis restarted are found dead before use, not by the
    command sent on them."""
    settings = make_settings(redis_url=own_redis_server.url, redis_max_connections=20)
    client = build_client(settings)
    key = f"{settings.redis_key_prefix}:after-restart"
    try:
        await asyncio.gather(*(client.blpop([key], timeout=0.05) for _ in range(20)))  # 20 open
        own_redis_server.kill()
        await asyncio.sleep(0.1)  # the event loop sees the connections close, as it would
        own_redis_server.start()  # in a service that keeps serving
        commands = await asyncio.gather(*(client.incr(key) for _ in range(20)))
        together = await asyncio.gather(*(run_together(client, [("INCR", key)]) for _ in range(20)))
    finally:
        await close(client)
    assert sorted(commands) == list(range(1, 21))
    assert sorted(reply for [reply] in together) == list(range(21, 41))
