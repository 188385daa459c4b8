"""Fixtures shared by unit tests (in-process fake Redis) and integration tests (real Redis)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.redis_client import RedisClient
from {{ cookiecutter.package_name }}.settings import MEMORY_URL, Settings

from tests.redis_deployments import REDIS_CLI, LocalCluster, LocalSentinelSet
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
    """Settings for tests: no .env, APP_ENV=test, a key prefix of the test's own, and the
    in-process fake Redis unless a test points elsewhere."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "app_env": "test",
            "redis_url": MEMORY_URL,
            "redis_topology": "standalone",
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


async def request_durations(client: httpx.AsyncClient, path: str, count: int) -> list[float]:
    """How long each of `count` requests took; each must still be answered 200."""
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        response = await client.get(path)
        durations.append(time.perf_counter() - started)
        assert response.status_code == 200
    return durations


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
    """Where integration tests find Redis, in the topology under test.

    TEST_REDIS_TOPOLOGY (standalone, sentinel or cluster; default: the project's own
    REDIS_TOPOLOGY) picks the deployment this suite starts, or TEST_REDIS_URL names one the
    environment provides (a CI service container).
    """

    topology: str
    url: str
    # The servers a client's round trip can land on (the masters): what MONITOR watches.
    monitor_urls: list[str]
    # What Settings need to reach it.
    settings: dict[str, Any] = field(default_factory=dict)

    def admin(self) -> RedisClient:
        """A client for looking around (cluster-aware); close it after use."""
        if self.topology == "cluster":
            return RedisCluster.from_url(self.url)
        return Redis.from_url(self.url)


TOPOLOGY = os.environ.get("TEST_REDIS_TOPOLOGY") or str(
    Settings.model_fields["redis_topology"].default
)


@pytest.fixture(scope="session")
def redis_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTarget]:
    url = external_url()
    if url:
        overrides = {"redis_url": url, "redis_topology": TOPOLOGY}
        yield RedisTarget(topology=TOPOLOGY, url=url, monitor_urls=[url], settings=overrides)
        return
    if REDIS_SERVER is None or (TOPOLOGY == "cluster" and REDIS_CLI is None):
        _require_redis()
    directory = tmp_path_factory.mktemp("redis")
    if TOPOLOGY == "cluster":
        cluster = LocalCluster(directory).start()
        try:
            yield RedisTarget(
                topology="cluster",
                url=cluster.url,
                monitor_urls=[master.url for master in cluster.masters()],
                settings={
                    "redis_topology": "cluster",
                    "redis_url": cluster.url,
                    "redis_cluster_nodes": cluster.addresses[1:],
                },
            )
        finally:
            cluster.stop()
    elif TOPOLOGY == "sentinel":
        deployment = LocalSentinelSet(directory).start()
        try:
            master = deployment.master()
            yield RedisTarget(
                topology="sentinel",
                url=master.url,
                monitor_urls=[master.url],
                settings={
                    "redis_topology": "sentinel",
                    "redis_url": "redis://127.0.0.1/0",  # credentials and db only: the
                    "redis_sentinels": deployment.addresses,  # sentinels name the master
                },
            )
        finally:
            deployment.stop()
    else:
        server = RedisServer(directory=directory).start()
        try:
            yield RedisTarget(
                topology="standalone",
                url=server.url,
                monitor_urls=[server.url],
                settings={"redis_url": server.url, "redis_topology": "standalone"},
            )
        finally:
            server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A standalone server only this test uses, so it may stop, kill or restart it."""
    if REDIS_SERVER is None:
        _require_redis()
    server = RedisServer(directory=tmp_path / "redis").start()
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
