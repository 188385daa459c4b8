"""The rate limiter against a real Redis: exactness, refill, headers, identity, outages."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.ratelimit import rate_limit, rate_limit_exempt
from {{ cookiecutter.package_name }}.settings import Settings

from tests.outages import (
    BREAKER_OPENS_AFTER_TWO_TIMEOUTS,
    assert_the_breaker_spared_the_timeout,
    durations_while_frozen,
)
from tests.redis_monitor import record_commands
from tests.redis_servers import RedisServer
from tests.redis_target import RedisTarget
from tests.service import Service, SettingsFactory, serve

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("clear_of_a_window_edge")]


def app_with_test_routes(settings: Settings) -> FastAPI:
    app = create_app(settings)

    @app.get("/test/plain")
    async def plain() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/test/strict")
    @rate_limit("1/minute", name="strict", fail_closed=True)
    async def strict() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/test/exempt")
    @rate_limit_exempt
    async def exempt() -> dict[str, str]:
        return {"ok": "yes"}

    return app


def client_from(service: Service, peer: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=service.app, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def wait_clear_of_window_edge(redis_url: str, period: int, margin: float) -> None:
    """Fixed and sliding windows align to the epoch on the Redis clock: start a burst
    well inside a window, so it cannot straddle two."""
    admin = Redis.from_url(redis_url)
    try:
        seconds, micros = await admin.time()
    finally:
        await admin.aclose()
    into_window = (seconds + micros / 1e6) % period
    if period - into_window < margin:
        await asyncio.sleep(period - into_window + 0.05)


async def test_exactly_the_quota_is_admitted_under_concurrency_across_instances(
    real_settings: SettingsFactory, redis_target: RedisTarget
) -> None:
    # Generous timeouts: on a loaded machine, 300 requests opening 100 connections at once
    # must not time out (the breaker would then let them pass); exactness is under test here.
    settings = real_settings(
        rate_limit_default="100/hour",
        redis_socket_timeout_seconds=2.0,
        redis_connect_timeout_seconds=2.0,
    )
    await wait_clear_of_window_edge(redis_target.url, 3600, margin=30)
    async with serve(settings) as first, serve(settings) as second:
        clients = [first.client, second.client] * 150
        responses = await asyncio.gather(*(client.get("/") for client in clients))
    assert Counter(response.status_code for response in responses) == {200: 100, 429: 200}


async def test_the_quota_comes_back_after_retry_after(
    real_settings: SettingsFactory, redis_target: RedisTarget
) -> None:
    settings = real_settings(rate_limit_default="2/second")
    await wait_clear_of_window_edge(redis_target.url, 1, margin=0.3)
    async with serve(settings) as service:
        statuses = [(await service.client.get("/")).status_code for _ in range(3)]
        denied = await service.client.get("/")
        wait = int(denied.headers["retry-after"])
        await asyncio.sleep(wait + 0.05)
        again = await service.client.get("/")
    assert statuses == [200, 200, 429]
    assert 1 <= wait <= 2
    assert again.status_code == 200


async def test_allowed_responses_carry_the_policy_and_what_remains(
    real_settings: SettingsFactory,
) -> None:
    settings = real_settings(rate_limit_default="10/minute")
    async with serve(settings) as service:
        first = await service.client.get("/")
        second = await service.client.get("/")
    assert first.headers["ratelimit-policy"] == '"default";q=10;w=60'
    remaining = [int(r.headers["ratelimit"].split(";r=")[1].split(";")[0]) for r in (first, second)]
    assert remaining[0] == 9
    assert remaining[1] == 8
    assert "retry-after" not in first.headers
    assert "x-ratelimit-limit" not in first.headers


async def test_a_denied_request_is_429_json_with_retry_after(
    real_settings: SettingsFactory,
) -> None:
    settings = real_settings(rate_limit_default="1/minute")
    async with serve(settings) as service:
        await service.client.get("/")
        denied = await service.client.get("/")
    assert denied.status_code == 429
    assert denied.json()["error"]["code"] == "rate_limited"
    assert denied.headers["ratelimit"].startswith('"default";r=0;t=')
    # At most two periods: a sliding window's previous count fades out over the next one.
    assert 1 <= int(denied.headers["retry-after"]) <= 120


async def test_legacy_headers_are_sent_when_asked_for(real_settings: SettingsFactory) -> None:
    settings = real_settings(rate_limit_default="10/minute", rate_limit_legacy_headers=True)
    async with serve(settings) as service:
        response = await service.client.get("/")
    assert response.headers["x-ratelimit-limit"] == "10"
    assert response.headers["x-ratelimit-remaining"] == "9"
    assert 1 <= int(response.headers["x-ratelimit-reset"]) <= 120  # (sliding: up to 2 periods)


async def test_a_limited_request_costs_one_round_trip(
    real_settings: SettingsFactory, redis_target: RedisTarget
) -> None:
    async with serve(real_settings()) as service:
        await service.client.get("/")  # script loaded
        async with record_commands(*redis_target.monitor_urls) as recording:
            response = await service.client.get("/")
    assert response.status_code == 200
    assert recording.round_trips == ["evalsha"]


async def test_exempt_routes_never_touch_redis(
    real_settings: SettingsFactory, redis_target: RedisTarget
) -> None:
    settings = real_settings(rate_limit_default="1/minute")
    paths = ["/health/live", "/health/live", "/test/exempt", "/test/exempt", "/docs"]
    async with (
        serve(settings, app_with_test_routes(settings)) as service,
        record_commands(*redis_target.monitor_urls) as recording,
    ):
        responses = [await service.client.get(path) for path in paths]
    assert {response.status_code for response in responses} == {200}
    assert recording.executed == []
    assert all("ratelimit" not in response.headers for response in responses)


async def test_a_route_policy_replaces_the_default(real_settings: SettingsFactory) -> None:
    settings = real_settings(rate_limit_default="100/minute")
    async with serve(settings, app_with_test_routes(settings)) as service:
        first = await service.client.get("/test/strict")
        second = await service.client.get("/test/strict")
        elsewhere = await service.client.get("/test/plain")
    assert first.headers["ratelimit-policy"] == '"strict";q=1;w=60'
    assert second.status_code == 429
    assert elsewhere.status_code == 200
    assert elsewhere.headers["ratelimit"].startswith('"default";r=99;')


async def test_different_clients_have_separate_buckets(real_settings: SettingsFactory) -> None:
    settings = real_settings(rate_limit_default="1/minute")
    async with serve(settings) as service:
        one, two = client_from(service, "198.51.100.1"), client_from(service, "198.51.100.2")
        statuses = [(await one.get("/")).status_code, (await two.get("/")).status_code]
        statuses.append((await one.get("/")).status_code)
        await one.aclose()
        await two.aclose()
    assert statuses == [200, 200, 429]


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(
    real_settings: SettingsFactory,
) -> None:
    settings = real_settings(rate_limit_default="2/minute", trusted_proxies="10.0.0.0/8")
    async with serve(settings) as service:
        statuses = [
            (await service.client.get("/", headers={"x-forwarded-for": f"192.0.2.{i}"})).status_code
            for i in range(3)
        ]
    assert statuses == [200, 200, 429]


async def test_clients_behind_a_trusted_proxy_are_told_apart(
    real_settings: SettingsFactory,
) -> None:
    settings = real_settings(rate_limit_default="1/minute", trusted_proxies="10.0.0.0/8")
    async with serve(settings) as service:
        proxy = client_from(service, "10.1.2.3")
        statuses = [
            (await proxy.get("/", headers={"x-forwarded-for": client})).status_code
            for client in ("192.0.2.1", "192.0.2.2", "192.0.2.1")
        ]
        await proxy.aclose()
    assert statuses == [200, 200, 429]


async def test_requests_pass_when_redis_is_down(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    settings = make_settings(redis_url=own_redis_server.url, rate_limit_default="1/minute")
    async with serve(settings, app_with_test_routes(settings)) as service:
        own_redis_server.stop()
        responses = [await service.client.get("/test/plain") for _ in range(3)]
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert all("ratelimit" not in response.headers for response in responses)


async def test_a_fail_closed_policy_answers_503_when_redis_is_down(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    settings = make_settings(redis_url=own_redis_server.url)
    async with serve(settings, app_with_test_routes(settings)) as service:
        own_redis_server.stop()
        response = await service.client.get("/test/strict")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "rate_limit_unavailable"
    assert "retry-after" not in response.headers


async def test_the_breaker_spares_requests_the_timeout_of_a_hung_redis(
    make_settings: SettingsFactory, own_redis_server: RedisServer
) -> None:
    settings = make_settings(redis_url=own_redis_server.url, **BREAKER_OPENS_AFTER_TWO_TIMEOUTS)
    async with serve(settings) as service:
        durations = await durations_while_frozen(service, own_redis_server, "/", 5)
    assert_the_breaker_spared_the_timeout(durations, settings)
