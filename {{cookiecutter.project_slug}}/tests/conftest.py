"""Fixtures shared by unit tests (in-process fake Redis) and integration tests (real Redis)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.redis_client import RedisClient
from {{ cookiecutter.package_name }}.settings import MEMORY_URL, Settings

from tests.redis_servers import REDIS_SERVER, RedisServer, external_url

NO_REDIS_REASON = (
    "integration tests need a real Redis: no redis-server on PATH and TEST_REDIS_URL is unset "
    "(install the redis-server package, or set TEST_REDIS_URL)"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings() -> SettingsFactory:
    """Settings for tests: no .env, APP_ENV=test and a key prefix of the test's own."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "app_env": "test",
            "redis_url": MEMORY_URL,
            "redis_key_prefix": f"test-{uuid.uuid4().hex[:12]}",
            "log_level": "WARNING",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return factory


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def redis(self) -> RedisClient:
        redis: RedisClient = self.app.state.redis
        return redis

    @property
    def settings(self) -> Settings:
        settings: Settings = self.app.state.settings
        return settings


@asynccontextmanager
async def serve(
    settings: Settings, app: FastAPI | None = None, *, raise_app_exceptions: bool = True
) -> AsyncIterator[Service]:
    """Run the app's lifespan and talk to it in-process over ASGI."""
    app = app or create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(
            app=app, client=("203.0.113.7", 51000), raise_app_exceptions=raise_app_exceptions
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Service(app=app, client=client)


@pytest.fixture
async def memory_service(make_settings: SettingsFactory) -> AsyncIterator[Service]:
    async with serve(make_settings()) as service:
        yield service


def _require_redis() -> None:
    if os.environ.get("REQUIRE_REDIS"):
        pytest.fail(NO_REDIS_REASON)
    pytest.skip(NO_REDIS_REASON)


@dataclass
class RedisTarget:
    """Where integration tests find Redis; `server` is set when this suite started it."""

    url: str
    server: RedisServer | None

    def admin(self) -> Redis:
        return Redis.from_url(self.url)


@pytest.fixture(scope="session")
def redis_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTarget]:
    url = external_url()
    if url:
        yield RedisTarget(url=url, server=None)
        return
    if REDIS_SERVER is None:
        _require_redis()
    server = RedisServer(directory=tmp_path_factory.mktemp("redis")).start()
    try:
        yield RedisTarget(url=server.url, server=server)
    finally:
        server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server only this test uses, so it may stop, kill or restart it."""
    if REDIS_SERVER is None:
        _require_redis()
    server = RedisServer(directory=tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def real_settings(make_settings: SettingsFactory, redis_target: RedisTarget) -> SettingsFactory:
    """Settings pointing at the real Redis; overrides as keyword arguments."""

    def factory(**overrides: Any) -> Settings:
        return make_settings(**{"redis_url": redis_target.url, **overrides})

    return factory


class CommandCounter:
    """Counts the commands a Redis server executed, from INFO commandstats deltas.

    Commands run inside Lua scripts are counted too (by name), which is how a test
    can tell a script that only read from one that also wrote. The server must be
    one only this test-suite uses (its own, or a CI service container).
    """

    def __init__(self, url: str) -> None:
        # One connection for both snapshots, so connecting is not counted.
        self._admin = Redis.from_url(url, single_connection_client=True)
        self._before: dict[str, int] = {}

    async def _snapshot(self) -> dict[str, int]:
        stats = await self._admin.info("commandstats")
        return {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in stats.items()
            if isinstance(value, dict)
        }

    async def start(self) -> None:
        self._before = await self._snapshot()

    async def delta(self) -> dict[str, int]:
        """Commands run since start(), by name; the counter's own INFO is left out."""
        after = await self._snapshot()
        counts = {name: calls - self._before.get(name, 0) for name, calls in after.items()}
        counts["info"] -= 1  # start()'s snapshot
        return {name: calls for name, calls in counts.items() if calls}

    async def close(self) -> None:
        await self._admin.aclose()


@pytest.fixture
async def command_counter(redis_target: RedisTarget) -> AsyncIterator[CommandCounter]:
    counter = CommandCounter(redis_target.url)
    try:
        yield counter
    finally:
        await counter.close()
