"""Redis outages as the tests stage them: a frozen server, and what the breaker should spare."""

from __future__ import annotations

import time
from typing import Any

import httpx

from {{ cookiecutter.package_name }}.settings import Settings

from tests.redis_servers import RedisServer
from tests.service import Service

# Short timeouts, and a breaker that opens after two of them and stays open for the test.
BREAKER_OPENS_AFTER_TWO_TIMEOUTS: dict[str, Any] = {
    "redis_socket_timeout_seconds": 0.25,
    "redis_breaker_threshold": 2,
    "redis_breaker_cooldown_seconds": 30,
}


async def durations_while_frozen(
    service: Service, server: RedisServer, path: str, count: int
) -> list[float]:
    """One request to warm up, then `count` timed ones while Redis is frozen (SIGSTOP)."""
    await service.client.get(path)
    server.pause()
    try:
        return await request_durations(service.client, path, count)
    finally:
        server.resume()


def assert_the_breaker_spared_the_timeout(durations: list[float], settings: Settings) -> None:
    """The first requests paid the socket timeout until the breaker opened, once each; the
    rest skipped Redis and took well under it."""
    timeout = settings.redis_socket_timeout_seconds
    opened_after = settings.redis_breaker_threshold
    assert all(timeout <= duration < 2 * timeout for duration in durations[:opened_after])
    assert all(duration < timeout / 2 for duration in durations[opened_after:])


async def request_durations(client: httpx.AsyncClient, path: str, count: int) -> list[float]:
    """How long each of `count` requests took; each must still be answered 200."""
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        response = await client.get(path)
        durations.append(time.perf_counter() - started)
        assert response.status_code == 200
    return durations
