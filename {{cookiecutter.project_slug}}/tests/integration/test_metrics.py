"""Metrics against a real Redis: known traffic moves each counter by exactly what it should,
and an outage shows in the breaker gauge (several workers: test_metrics_processes.py)."""

from __future__ import annotations

import httpx
import pytest

{% if cookiecutter.__uses_breaker -%}
from tests.redis_servers import free_port
{% endif -%}
from tests.scraped import Scrape
from tests.service import SettingsFactory, serve

pytestmark = pytest.mark.anyio


async def scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return Scrape(response.text)


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    """How far one sample moved between two scrapes."""
    return after.value(name, **labels) - before.value(name, **labels)


async def test_redis_commands_are_timed_by_command_and_pool_waits_are_measured(
    real_settings: SettingsFactory,
) -> None:
    async with serve(real_settings()) as service:
        before = await scrape(service.client)
        for _ in range(3):
            assert (await service.client.get("/health/ready")).status_code == 200
        after = await scrape(service.client)
    commands = "redis_command_duration_seconds_count"
{%- if cookiecutter.redis_topology == "cluster" %}
    # A cluster is checked with CLUSTER INFO, not PING.
    assert moved(before, after, commands, command="CLUSTER INFO") == 3
{%- else %}
    assert moved(before, after, commands, command="PING") == 3
{%- endif %}
    assert moved(before, after, "redis_pool_wait_seconds_count") >= 3
{%- if cookiecutter.use_cache %}


async def test_three_misses_then_five_hits_count_three_misses_and_five_hits(
    real_settings: SettingsFactory,
) -> None:
    async with serve(real_settings(demo_compute_delay_ms=0)) as service:
        await service.client.get("/items/warm-up")  # Redis has loaded the lookup script
        before = await scrape(service.client)
        for item in ("one", "two", "three"):
            assert (await service.client.get(f"/items/{item}")).headers["X-Cache"] == "MISS"
        for item in ("one", "two", "three", "one", "two"):
            assert (await service.client.get(f"/items/{item}")).headers["X-Cache"] == "HIT"
        after = await scrape(service.client)
    for result, expected in {"miss": 3, "hit": 5, "stale": 0, "bypass": 0, "error": 0}.items():
        assert moved(before, after, "cache_lookups_total", namespace="items", result=result) == (
            expected
        ), result
    # Every lookup is one EVALSHA, named after its script.
    commands = "redis_command_duration_seconds_count"
    assert moved(before, after, commands, command="cache.lookup") == 8


async def test_a_no_store_request_counts_as_a_bypass(real_settings: SettingsFactory) -> None:
    async with serve(real_settings(demo_compute_delay_ms=0)) as service:
        await service.client.get("/items/skip", headers={"Cache-Control": "no-store"})
        scraped = await scrape(service.client)
    assert scraped.value("cache_lookups_total", namespace="items", result="bypass") == 1
{%- endif %}
{%- if cookiecutter.rate_limiting != "none" %}


@pytest.mark.usefixtures("clear_of_a_window_edge")
async def test_eight_requests_over_a_limit_of_five_count_five_allowed_and_three_limited(
    real_settings: SettingsFactory,
) -> None:
    async with serve(real_settings(rate_limit_default="5/minute")) as service:
        statuses = [(await service.client.get("/")).status_code for _ in range(8)]
        scraped = await scrape(service.client)
    assert statuses == [200] * 5 + [429] * 3
    assert scraped.value("ratelimit_decisions_total", policy="default", outcome="allowed") == 5
    assert scraped.value("ratelimit_decisions_total", policy="default", outcome="limited") == 3
    assert scraped.value("http_requests_total", method="GET", route="/", status="429") == 3
{%- endif %}
{%- if cookiecutter.use_sessions %}


async def test_a_login_counts_one_login_and_its_session_reads(
    real_settings: SettingsFactory,
) -> None:
    credentials = {"username": "metrics-user", "password": "correct horse battery staple"}
    async with serve(real_settings(password_hash_cost=10)) as service:
        assert (await service.client.post("/auth/register", json=credentials)).status_code == 201
        assert (await service.client.post("/auth/login", json=credentials)).status_code == 200
        for _ in range(2):
            assert (await service.client.get("/auth/me")).status_code == 200
        scraped = await scrape(service.client)
    assert scraped.value("session_operations_total", operation="login", outcome="ok") == 1
    assert scraped.value("session_operations_total", operation="read", outcome="ok") == 2
{%- endif %}
{%- if cookiecutter.__uses_breaker %}


async def test_a_redis_outage_opens_the_breaker_and_shows_in_the_state_gauge(
    real_settings: SettingsFactory,
) -> None:
    headers: dict[str, str] = {}
{%- if cookiecutter.use_cache %}
    path, feature = "/items/outage", "cache"
{%- elif cookiecutter.rate_limiting != "none" %}
    path, feature = "/", "rate limiter"
{%- else %}
    path, feature = "/auth/me", "sessions"
    headers["Cookie"] = "session=" + ".".join(("a" + "x" * 22, "s" * 16, "t" * 43))
{%- endif %}
    nothing_there = f"redis://127.0.0.1:{free_port()}/0"
    settings = real_settings(
        redis_url=nothing_there, redis_topology="standalone", demo_compute_delay_ms=0
    )
    async with serve(settings) as service:
        closed = await scrape(service.client)
        for _ in range(settings.redis_breaker_threshold + 2):
            await service.client.get(path, headers=headers)
        opened = await scrape(service.client)
    assert closed.value("breaker_state", feature=feature) == 0
    assert opened.value("breaker_state", feature=feature) == 2
    assert opened.value("breaker_transitions_total", feature=feature, state="open") == 1
{%- if cookiecutter.use_cache %}
    # Five lookups failed; then the open breaker answered for Redis: errors all the same.
    assert opened.value("cache_lookups_total", namespace="items", result="error") == 7
{%- endif %}
{%- endif %}
