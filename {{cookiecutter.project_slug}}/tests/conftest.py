"""Fixtures shared by unit tests (in-process fake Redis) and integration tests (real Redis).
Helpers live in modules beside this file: service.py, redis_target.py, redis_servers.py."""

from __future__ import annotations

{% if cookiecutter.rate_limiting != "none" -%}
import time
{% endif -%}
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

{% if cookiecutter.rate_limiting != "none" -%}
from {{ cookiecutter.package_name }}.ratelimit.limiter import RateLimiter
{% endif -%}
from {{ cookiecutter.package_name }}.settings import Settings

{% if cookiecutter.use_realtime -%}
from tests.realtime_clients import ORIGIN
{% endif -%}
from tests.redis_servers import REDIS_SERVER, RedisServer
from tests.redis_target import RedisTarget, require_redis, started_target
from tests.service import Service, SettingsFactory, serve, settings_for_test


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_settings() -> SettingsFactory:
    """Settings for tests (see tests.service.settings_for_test); overrides as keyword arguments."""
    return settings_for_test


@pytest.fixture
async def memory_service(make_settings: SettingsFactory) -> AsyncIterator[Service]:
    async with serve(make_settings()) as service:
        yield service


@pytest.fixture(scope="session")
def redis_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTarget]:
    with started_target(tmp_path_factory.mktemp("redis")) as target:
        yield target


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A standalone server only this test uses, so it may stop, kill or restart it."""
    if REDIS_SERVER is None:
        require_redis()
    server = RedisServer(directory=tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def durable_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A standalone server of this test's own that keeps every write (AOF, fsync always):
    a kill loses nothing, so the state before a fault is there after it."""
    if REDIS_SERVER is None:
        require_redis()
    durable = ("--appendonly", "yes", "--appendfsync", "always")
    server = RedisServer(directory=tmp_path / "redis", extra_args=durable).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def real_settings(make_settings: SettingsFactory, redis_target: RedisTarget) -> SettingsFactory:
    """Settings pointing at the real Redis under test; overrides as keyword arguments."""

    def factory(**overrides: Any) -> Settings:
        return make_settings(**{**redis_target.settings, **overrides})

    return factory
{%- if cookiecutter.rate_limiting != "none" %}


@pytest.fixture
async def rate_limiter(real_settings: SettingsFactory) -> AsyncIterator[RateLimiter]:
    """The limiter of a running app on the real Redis under test."""
    async with serve(real_settings()) as service:
        yield service.app.state.rate_limiter


@pytest.fixture
def clear_of_a_window_edge() -> None:
    """Fixed and sliding windows begin anew at each whole minute of Redis' clock (this
    machine's): a test that counts requests against a per-minute policy starts at least
    3 s before the next one, or it could see its count reset halfway."""
    left = 60 - time.time() % 60
    if left < 3:
        time.sleep(left + 0.05)
{%- endif %}
{%- if cookiecutter.use_realtime %}


@pytest.fixture
def realtime_settings(real_settings: SettingsFactory) -> SettingsFactory:
    """Real-time tests' settings on the real Redis under test: their clients' Origin, a 1 s
    probe, room for the many messages they publish (overrides as keyword arguments)."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "realtime_allowed_origins": [ORIGIN],
            "realtime_probe_seconds": 1.0,
{%- if cookiecutter.use_sessions %}
            "password_hash_cost": 10,
            "session_secret": "w" * 40,  # one for every worker, in or out of this process
{%- endif %}
{%- if cookiecutter.rate_limiting != "none" %}
            "rate_limit_default": "1000000/minute",
{%- endif %}
        }
        return real_settings(**{**values, **overrides})

    return factory
{%- endif %}
