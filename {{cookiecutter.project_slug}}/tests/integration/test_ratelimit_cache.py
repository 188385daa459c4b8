"""The cache and the limiter on one request: one round trip, each with its own reply."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.cache.store import LOOKUP
from {{ cookiecutter.package_name }}.ratelimit.limiter import RateLimiter
from {{ cookiecutter.package_name }}.settings import Settings

from tests.redis_monitor import cost_of, record_commands
from tests.redis_servers import RedisServer
from tests.redis_target import RedisTarget
from tests.service import Service, SettingsFactory, serve

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("clear_of_a_window_edge")]


@pytest.fixture
def settings(real_settings: SettingsFactory) -> Settings:
    return real_settings(demo_compute_delay_ms=0)


@pytest.fixture
def own_settings(make_settings: SettingsFactory, own_redis_server: RedisServer) -> Settings:
    return make_settings(redis_url=own_redis_server.url, demo_compute_delay_ms=0)


def remaining(response: httpx.Response) -> int:
    """`r` of the RateLimit header: requests left in the window."""
    fields = dict(part.split("=") for part in response.headers["ratelimit"].split(";")[1:])
    return int(fields["r"])


async def warm_hit(service: Service, path: str = "/items/a") -> None:
    """Scripts loaded, the entry stored: the next GET of `path` is a hit."""
    await service.client.get(path)
    assert (await service.client.get(path)).headers["x-cache"] == "HIT"


async def test_a_hit_and_its_rate_limit_decision_cost_one_round_trip(
    own_settings: Settings, own_redis_server: RedisServer
) -> None:
    async with serve(own_settings) as service:
        await warm_hit(service)
        cost = await cost_of(lambda: service.client.get("/items/a"), own_redis_server.url)
    assert [response.headers["x-cache"] for response in cost.responses] == ["HIT", "HIT"]
    assert cost.round_trips == 1
    assert cost.commands == ["evalsha", "evalsha"]  # the lookup and the decision


async def test_a_hit_answered_before_routing_carries_the_rate_limit_headers(
    settings: Settings, redis_target: RedisTarget
) -> None:
    async with serve(settings) as service:
        await warm_hit(service)
        async with record_commands(*redis_target.monitor_urls) as recording:
            response = await service.client.get("/items/a")
    assert response.headers["x-cache"] == "HIT"
    assert response.headers["ratelimit-policy"] == '"default";q=100;w=60'
    assert remaining(response) == 97
    assert recording.round_trips_touching("{c:") == ["evalsha"]
    assert recording.round_trips_touching("{rl:") == ["evalsha"]


async def test_a_refused_request_gets_429_even_when_its_answer_is_cached(
    real_settings: SettingsFactory,
) -> None:
    async with serve(real_settings(rate_limit_default="2/minute")) as service:
        await warm_hit(service)
        refused = await service.client.get("/items/a")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert "x-cache" not in refused.headers
    assert "retry-after" in refused.headers


async def test_a_refused_request_releases_the_stampede_lock_its_lookup_took(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    settings = make_settings(redis_url=own_redis_server.url, rate_limit_default="1/minute")
    async with serve(settings) as service:
        assert (await service.client.get("/items/a")).status_code == 200
        refused = await service.client.get("/items/cold")  # its lookup took the lock
        admin = Redis.from_url(own_redis_server.url)
        try:
            locks = [key async for key in admin.scan_iter(match="*:l:*")]
        finally:
            await admin.aclose()
    assert refused.status_code == 429
    assert locks == []


async def test_with_the_limiter_breaker_open_the_cache_alone_is_asked(
    own_settings: Settings, own_redis_server: RedisServer
) -> None:
    async with serve(own_settings) as service:
        await warm_hit(service)
        limiter: RateLimiter = service.app.state.rate_limiter
        for _ in range(limiter.breaker.threshold):
            limiter.breaker.failed(ConnectionError("test"))
        async with record_commands(own_redis_server.url) as recording:
            response = await service.client.get("/items/a")
    assert response.status_code == 200
    assert response.headers["x-cache"] == "HIT"
    assert "ratelimit" not in response.headers  # failed open: no decision to report
    assert recording.round_trips == ["evalsha"]


async def test_a_script_redis_lost_is_loaded_and_run_again_alone_keeping_the_other_reply(
    own_settings: Settings, own_redis_server: RedisServer
) -> None:
    async with serve(own_settings) as service:
        await warm_hit(service)
        before = remaining(await service.client.get("/items/a"))
        admin = Redis.from_url(own_redis_server.url)
        try:
            await admin.script_flush()
            await admin.script_load(LOOKUP.source)  # the limiter's script alone is missing
        finally:
            await admin.aclose()
        async with record_commands(own_redis_server.url) as recording:
            response = await service.client.get("/items/a")
    assert response.headers["x-cache"] == "HIT"
    assert remaining(response) == before - 1  # counted once, not twice
    assert recording.round_trips == ["evalsha", "evalsha", "script", "evalsha"]
    assert recording.round_trips_touching("{c:") == ["evalsha"]


async def test_a_script_error_of_the_limiter_is_its_own_and_the_cache_still_answers(
    own_settings: Settings, own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve(own_settings) as service:
        await warm_hit(service)
        limiter: RateLimiter = service.app.state.rate_limiter
        bucket = limiter.key(limiter.default, "ip:203.0.113.7")  # the test client's
        admin = Redis.from_url(own_redis_server.url)
        try:
            await admin.delete(bucket)
            await admin.rpush(bucket, "not a bucket")  # every algorithm's script errs on it
        finally:
            await admin.aclose()
        response = await service.client.get("/items/a")
    assert response.status_code == 200
    assert response.headers["x-cache"] == "HIT"
    assert "ratelimit" not in response.headers  # failed open
    assert "rate limit script failed" in caplog.text
