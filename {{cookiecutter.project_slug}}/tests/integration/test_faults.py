"""Faults under load: Redis killed, frozen, cut off and full while about 200 requests a
second reach the service. Each feature keeps its promise: the routes that fail open never
answer 5xx, sessions answer 503 (never 500) only while Redis cannot serve them, no request
waits much longer than the Redis socket timeout, and all is normal again soon after."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from {{ cookiecutter.package_name }}.settings import Settings

from tests.load import Answer, steady_load
from tests.redis_servers import RedisServer, send_command
from tests.service import Service, SettingsFactory, serve

pytestmark = [pytest.mark.anyio, pytest.mark.faults]

RATE = 200  # requests a second
LOAD_SECONDS = 10
FAULT_AFTER_SECONDS = 2
OUTAGE_SECONDS = 5
RECOVERY_LIMIT_SECONDS = 2.0

# Each route the load reaches, and what a normal answer (served with Redis) looks like.
NORMAL: dict[str, Callable[[Answer], bool]] = {
    "/health/live": lambda answer: answer.status == 200,
{%- if cookiecutter.use_cache %}
    "/items/faults": lambda answer: answer.headers.get("x-cache") in {"HIT", "STALE"},
{%- endif %}
{%- if cookiecutter.rate_limiting != "none" %}
    "/": lambda answer: answer.status == 200 and "ratelimit" in answer.headers,
{%- endif %}
{%- if cookiecutter.use_sessions %}
    "/auth/me": lambda answer: answer.status == 200,
{%- endif %}
}
{%- if cookiecutter.use_sessions %}
# Routes that need Redis to answer at all: 503 while it cannot.
NEEDS_REDIS = {"/auth/me"}
{%- else %}
NEEDS_REDIS: set[str] = set()
{%- endif %}


@pytest.fixture
def settings(make_settings: SettingsFactory, durable_redis_server: RedisServer) -> Settings:
    return make_settings(
        redis_url=durable_redis_server.url,
{%- if cookiecutter.use_cache %}
        demo_compute_delay_ms=0,
        cache_ttl_seconds=3600,
{%- endif %}
{%- if cookiecutter.use_sessions %}
        password_hash_cost=10,
{%- endif %}
{%- if cookiecutter.rate_limiting != "none" %}
        rate_limit_default="1000000/minute",
{%- endif %}
    )


async def prepare(service: Service) -> dict[str, str]:
    """State the load relies on (a cached entry, a session); the headers it sends."""
    headers: dict[str, str] = {}
{%- if cookiecutter.use_cache %}
    for _ in range(2):
        await service.client.get("/items/faults")
{%- endif %}
{%- if cookiecutter.use_sessions %}
    body = {"username": "faults", "password": "correct horse battery"}
    await service.client.post("/auth/register", json=body)
    login = await service.client.post("/auth/login", json=body)
    headers["cookie"] = login.headers["set-cookie"].split(";", 1)[0]
    service.client.cookies.clear()  # the load sends the cookie itself
{%- endif %}
    return headers


@dataclass
class Figures:
    fault: str
    requests: int
    statuses: Counter[int]
    max_seconds: float
    recovery_seconds: float

    def __str__(self) -> str:
        counted = sorted(self.statuses.items())
        statuses = ", ".join(f"{count} x {status}" for status, count in counted)
        return (
            f"{self.fault}: {self.requests} requests ({statuses}), slowest "
            f"{self.max_seconds:.2f} s, normal again {self.recovery_seconds:.2f} s after Redis"
        )


def recovery_seconds(answers: list[Answer], back_at: float) -> float:
    """From Redis's return to the first request after which every answer is normal."""
    recovered_at = back_at
    for answer in answers:
        if answer.started >= back_at and not NORMAL[answer.path](answer):
            recovered_at = answer.started + answer.took
    return recovered_at - back_at


async def run_fault(
    service: Service, headers: dict[str, str], name: str, fault: Callable[[], Awaitable[None]]
) -> tuple[list[Answer], float, float, Figures]:
    load = asyncio.create_task(
        steady_load(service.client, list(NORMAL), rate=RATE, seconds=LOAD_SECONDS, headers=headers)
    )
    await asyncio.sleep(FAULT_AFTER_SECONDS)
    fault_at = time.monotonic()
    await fault()
    back_at = time.monotonic()
    answers = await load
    figures = Figures(
        fault=name,
        requests=len(answers),
        statuses=Counter(answer.status for answer in answers),
        max_seconds=max(answer.took for answer in answers),
        recovery_seconds=recovery_seconds(answers, back_at),
    )
    print(f"\n{figures}")
    return answers, fault_at, back_at, figures


def assert_each_feature_kept_its_promise(
    answers: list[Answer], fault_at: float, back_at: float, figures: Figures, settings: Settings
) -> None:
    wrong = [
        (answer.path, answer.status, round(answer.started - fault_at, 2))
        for answer in answers
        if answer.status >= 500
        and not (
            answer.path in NEEDS_REDIS
            and answer.status == 503
            and fault_at - settings.redis_socket_timeout_seconds
            <= answer.started
            <= back_at + RECOVERY_LIMIT_SECONDS
        )
    ]
    assert wrong == []
    assert figures.max_seconds <= settings.redis_socket_timeout_seconds + 1
    assert figures.recovery_seconds <= RECOVERY_LIMIT_SECONDS
    assert figures.requests >= RATE * LOAD_SECONDS * 0.9  # the load was really applied


async def test_redis_killed_and_restarted_under_load(
    settings: Settings, durable_redis_server: RedisServer
) -> None:
    async def fault() -> None:
        durable_redis_server.kill()
        await asyncio.sleep(1)
        await asyncio.to_thread(durable_redis_server.start)

    async with serve(settings) as service:
        headers = await prepare(service)
        result = await run_fault(service, headers, "killed and restarted", fault)
    assert_each_feature_kept_its_promise(*result, settings)


async def test_redis_frozen_for_five_seconds_under_load(
    settings: Settings, durable_redis_server: RedisServer
) -> None:
    async def fault() -> None:
        durable_redis_server.pause()
        try:
            await asyncio.sleep(OUTAGE_SECONDS)
        finally:
            durable_redis_server.resume()

    async with serve(settings) as service:
        headers = await prepare(service)
        result = await run_fault(service, headers, f"frozen for {OUTAGE_SECONDS} s", fault)
    assert_each_feature_kept_its_promise(*result, settings)


async def test_every_client_cut_off_under_load(
    settings: Settings, durable_redis_server: RedisServer
) -> None:
    async def fault() -> None:
        kill = ("CLIENT", "KILL", "TYPE", "normal")  # every client but this one
        await asyncio.to_thread(send_command, durable_redis_server.port, *kill)

    async with serve(settings) as service:
        headers = await prepare(service)
        result = await run_fault(service, headers, "every client cut off", fault)
    assert_each_feature_kept_its_promise(*result, settings)


async def test_redis_full_under_noeviction_under_load(
    settings: Settings, durable_redis_server: RedisServer
) -> None:
    port = durable_redis_server.port

    async def config_set(name: str, value: str) -> None:
        await asyncio.to_thread(send_command, port, "CONFIG", "SET", name, value)

    async def fault() -> None:
        info = (await asyncio.to_thread(send_command, port, "INFO", "memory")).decode()
        used = re.search(r"used_memory:(\d+)", info)
        assert used is not None
        await config_set("maxmemory-policy", "noeviction")
        await config_set("maxmemory", used[1])  # every write that needs memory is refused
        try:
            await asyncio.sleep(OUTAGE_SECONDS)
        finally:
            await config_set("maxmemory", "0")

    async with serve(settings) as service:
        headers = await prepare(service)
        result = await run_fault(service, headers, "full (noeviction)", fault)
    assert_each_feature_kept_its_promise(*result, settings)
