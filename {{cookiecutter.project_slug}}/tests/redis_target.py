"""Where integration tests find Redis, in the topology under test.

TEST_REDIS_TOPOLOGY (standalone, sentinel or cluster; default: the project's own
REDIS_TOPOLOGY) picks the deployment the suite starts, or TEST_REDIS_URL names one the
environment provides (a CI service container).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from {{ cookiecutter.package_name }}.redis_client import RedisClient
from {{ cookiecutter.package_name }}.settings import Settings

from tests.redis_deployments import REDIS_CLI, LocalCluster, LocalSentinelSet
from tests.redis_servers import REDIS_SERVER, RedisServer, external_url

NO_REDIS_REASON = (
    "integration tests need a real Redis: no redis-server on PATH and TEST_REDIS_URL is unset "
    "(install the redis-server package, or set TEST_REDIS_URL)"
)
TOPOLOGY = os.environ.get("TEST_REDIS_TOPOLOGY") or str(
    Settings.model_fields["redis_topology"].default
)


def require_redis() -> NoReturn:
    """Skip (or, with REQUIRE_REDIS set, fail) a test that needs a real Redis."""
    if os.environ.get("REQUIRE_REDIS"):
        pytest.fail(NO_REDIS_REASON)
    pytest.skip(NO_REDIS_REASON)


@dataclass
class RedisTarget:
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


@contextmanager
def started_target(directory: Path) -> Iterator[RedisTarget]:
    """The Redis under test: the environment's (TEST_REDIS_URL) or one started in
    `directory` for TOPOLOGY, stopped on exit."""
    url = external_url()
    if url:
        overrides = {"redis_url": url, "redis_topology": TOPOLOGY}
        yield RedisTarget(topology=TOPOLOGY, url=url, monitor_urls=[url], settings=overrides)
        return
    if REDIS_SERVER is None or (TOPOLOGY == "cluster" and REDIS_CLI is None):
        require_redis()
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
