"""Redis Cluster, on a real local deployment (3 masters, 3 replicas): the service survives
a master's death with load running, and two server processes share everything."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio.cluster import RedisCluster
{%- if cookiecutter.use_sessions %}

from {{ cookiecutter.package_name }}.scripts import hash_tagged
from {{ cookiecutter.package_name }}.sessions.store import user_tag
{%- elif cookiecutter.use_cache or cookiecutter.rate_limiting == "none" %}

from {{ cookiecutter.package_name }}.scripts import hash_tagged
{%- endif %}

from tests.failover import (
    Load,
    answering_again,
    app_for_failover,
    check_state,
    failover_settings,
    probe_paths,
{%- if cookiecutter.use_realtime %}
    realtime_stream_key,
    realtime_through_failover,
{%- endif %}
    write_state,
)
from tests.processes import server_process
from tests.redis_deployments import (
    REDIS_CLI,
    LocalCluster,
    Secured,
{%- if cookiecutter.use_realtime %}
    info_field,
    wait_for,
{%- endif %}
    wait_replicated,
)
from tests.redis_servers import REDIS_SERVER, RedisServer{% if cookiecutter.use_realtime %}, send_command{% endif %}
from tests.service import SettingsFactory, serve, settings_for_test

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        REDIS_SERVER is None or REDIS_CLI is None,
        reason="needs redis-server and redis-cli to build the cluster",
    ),
]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster of this test's own: the failover test kills one of its masters."""
    started = LocalCluster(tmp_path).start()
    try:
        yield started
    finally:
        started.stop()


def cluster_settings(cluster: LocalCluster) -> dict[str, object]:
    return {
        "redis_topology": "cluster",
        "redis_url": cluster.url,
        "redis_cluster_nodes": cluster.addresses[1:],
    }


async def master_serving(cluster: LocalCluster, key: str) -> RedisServer:
    client = RedisCluster.from_url(cluster.url)
    try:
        await client.initialize()
        node = client.get_node_from_key(key)
    finally:
        await client.aclose()
    assert node is not None
    return next(server for server in cluster.nodes if server.port == node.port)


async def test_the_service_recovers_from_a_masters_death_without_losing_replicated_data(
    make_settings: SettingsFactory, cluster: LocalCluster
) -> None:
    settings = failover_settings(make_settings, **cluster_settings(cluster))
    async with serve(settings, app_for_failover(settings)) as service:
        ready = (await service.client.get("/health/ready")).json()
        assert ready["redis"] == {"topology": "cluster", "cluster_state": "ok"}
        before = await write_state(service.client)
        for master in cluster.masters():
            wait_replicated(master, replicas=1)
        # The master of the slot that holds most of the state written above.
        # Kill the master of a slot the service's state lives in, so recovery is needed.
{%- if cookiecutter.use_sessions %}
        key = hash_tagged(settings.redis_key_prefix, f"s:{user_tag('failover')}", "meta")
{%- elif cookiecutter.use_cache %}
        key = hash_tagged(settings.redis_key_prefix, "c:v1:items", "ver")
{%- elif cookiecutter.rate_limiting != "none" %}
        limiter = service.app.state.rate_limiter
        key = limiter.key(limiter.default, "ip:203.0.113.7")  # this test client's bucket
{%- else %}
        key = hash_tagged(settings.redis_key_prefix, "any", "x")
{%- endif %}
        victim = await master_serving(cluster, key)

        load = Load(service.client, probe_paths())
        load.start()
        await asyncio.sleep(0.5)
        killed_at = time.monotonic()
        victim.kill()
        recovery = await answering_again(service, since=killed_at)
        recovered_at = killed_at + recovery
        await asyncio.sleep(1)  # keep the load on after the recovery
        await load.stop()
        await check_state(service.client, before)
    print(f"\ncluster failover: the service answered again {recovery:.2f} s after the kill")
    assert recovery < 20
    assert load.server_errors_after(recovered_at) == []


{%- if cookiecutter.use_realtime %}


async def test_realtime_follows_a_cluster_failover_under_load_and_no_worker_stays_deaf(
    make_settings: SettingsFactory, cluster: LocalCluster
) -> None:
    settings = failover_settings(make_settings, **cluster_settings(cluster))
    stream_key = realtime_stream_key(settings, "through")
    victim = await master_serving(cluster, stream_key)  # the topic's shard channel too
    replica = next(
        node for node in cluster.nodes
        if info_field(node.port, "replication", "master_port") == str(victim.port)
    )  # fmt: skip

    async def failover() -> None:
        victim.kill()
        await asyncio.to_thread(
            wait_for, lambda: info_field(replica.port, "replication", "role") == "master",
            "the replica to take over", 20,
        )  # fmt: skip

    def replicated() -> None:
        for master in cluster.masters():
            wait_replicated(master, replicas=1)

    after = await realtime_through_failover(settings, replicated, failover, "through")

    newest = send_command(replica.port, "XREVRANGE", stream_key, "+", "-", "COUNT", "1")
    assert f"{after[-1].split(':')[1]}-0".encode() in newest  # published to the new master
{%- endif %}


async def test_nodes_started_like_compose_form_a_cluster_the_app_user_can_use(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """entrypoint.sh with REDIS_CLUSTER=yes, ACL users, replicas authenticating as admin."""
    secured = Secured(
        admin_password=secrets.token_urlsafe(16),
        app_password=secrets.token_urlsafe(16),
        prefix=f"secured-{secrets.token_hex(4)}",
    )
    cluster = LocalCluster(tmp_path, secured=secured).start()
    try:
        app_url = f"redis://app:{secured.app_password}@127.0.0.1:{cluster.nodes[0].port}/0"
        settings = failover_settings(
            make_settings,
            redis_topology="cluster",
            redis_url=app_url,
            redis_key_prefix=secured.prefix,
        )
        async with serve(settings, app_for_failover(settings)) as service:
            ready = (await service.client.get("/health/ready")).json()
            assert ready["redis"] == {"topology": "cluster", "cluster_state": "ok"}
            before = await write_state(service.client)
            for master in cluster.masters():
                wait_replicated(master, replicas=1)
            await check_state(service.client, before)
    finally:
        cluster.stop()


async def test_two_server_processes_share_limits_sessions_and_cache(cluster: LocalCluster) -> None:
    settings = settings_for_test(
        redis_topology="cluster",
        redis_url=cluster.url,
        redis_cluster_nodes=cluster.addresses[1:],
        redis_key_prefix=f"two-processes-{os.getpid()}",
{%- if cookiecutter.use_sessions %}
        session_secret="t" * 40,
        password_hash_cost=10,
{%- endif %}
{%- if cookiecutter.rate_limiting != "none" %}
        rate_limit_default="20/day",
        # Only "/" is limited, so the session and cache checks below are not.
        rate_limit_exempt_paths=["/health"{{ ', "/auth"' if cookiecutter.use_sessions }}{{ ', "/items"' if cookiecutter.use_cache }}],
{%- endif %}
    )
    async with (
        server_process(settings) as one,
        server_process(settings) as other,
        httpx.AsyncClient(base_url=one.base_url) as first,
        httpx.AsyncClient(base_url=other.base_url) as second,
    ):
        pair = (first, second)
        assert [(await client.get("/health/ready")).status_code for client in pair] == [200, 200]
{%- if cookiecutter.rate_limiting != "none" %}
        # Limits: one quota for both processes, exactly.
        statuses = [(await pair[i % 2].get("/")).status_code for i in range(30)]
        assert statuses.count(200) == 20
        assert statuses.count(429) == 10
{%- endif %}
{%- if cookiecutter.use_sessions %}
        # Sessions: logged in through one process, known to the other.
        body = {"username": "both", "password": "correct horse battery"}
        assert (await first.post("/auth/register", json=body)).status_code == 201
        assert (await first.post("/auth/login", json=body)).status_code == 200
        second.cookies.update(first.cookies)
        assert (await second.get("/auth/me")).json() == {"username": "both"}
{%- endif %}
{%- if cookiecutter.use_cache %}
        # Cache: computed by one process, served by the other with the same ETag.
        computed = await first.get("/items/shared")
        served = await second.get("/items/shared")
        assert (computed.headers["x-cache"], served.headers["x-cache"]) == ("MISS", "HIT")
        assert served.headers["etag"] == computed.headers["etag"]
{%- endif %}
