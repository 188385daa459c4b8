"""Sentinel, on a real local deployment (1 master, 2 replicas, 3 sentinels): the service
survives the master's death, with load running, and loses nothing that was replicated."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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
from tests.redis_deployments import (
    LocalSentinelSet,
    Secured,
{%- if cookiecutter.use_realtime %}
    wait_for,
{%- endif %}
    wait_replicated,
)
from tests.redis_servers import REDIS_SERVER{% if cookiecutter.use_realtime %}, send_command{% endif %}
from tests.service import SettingsFactory, serve

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(REDIS_SERVER is None, reason="needs redis-server for the deployment"),
]


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[LocalSentinelSet]:
    """A deployment of this test's own: the test kills its master."""
    started = LocalSentinelSet(tmp_path).start()
    try:
        yield started
    finally:
        started.stop()


def sentinel_settings(deployment: LocalSentinelSet) -> dict[str, object]:
    """The data nodes' address comes from the sentinels (the URL gives database and
    credentials only)."""
    return {
        "redis_topology": "sentinel",
        "redis_url": "redis://127.0.0.1/0",
        "redis_sentinels": deployment.addresses,
    }


async def test_the_service_recovers_from_the_masters_death_without_losing_replicated_data(
    make_settings: SettingsFactory, deployment: LocalSentinelSet
) -> None:
    settings = failover_settings(make_settings, **sentinel_settings(deployment))
    async with serve(settings, app_for_failover(settings)) as service:
        assert (await service.client.get("/health/ready")).json()["redis"]["topology"] == "sentinel"
        before = await write_state(service.client)
        old_master = deployment.master()
        wait_replicated(old_master, replicas=2)  # both replicas have all written so far

        load = Load(service.client, probe_paths())
        load.start()
        await asyncio.sleep(0.5)
        killed_at = time.monotonic()
        old_master.kill()
        recovery = await answering_again(service, since=killed_at)
        recovered_at = killed_at + recovery
        await asyncio.sleep(1)  # keep the load on after the recovery
        await load.stop()
        await check_state(service.client, before)
        new_master = deployment.master_port()
    print(f"\nsentinel failover: the service answered again {recovery:.2f} s after the kill")
    assert new_master != old_master.port
    assert recovery < 20
    assert load.server_errors_after(recovered_at) == []


async def test_nodes_started_like_compose_replicate_and_serve_the_app_user(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """entrypoint.sh (ACL users, replicas authenticating as admin) and sentinel.sh."""
    secured = Secured(
        admin_password=secrets.token_urlsafe(16),
        app_password=secrets.token_urlsafe(16),
        prefix=f"secured-{secrets.token_hex(4)}",
    )
    deployment = LocalSentinelSet(tmp_path, secured=secured).start()
    try:
        settings = failover_settings(
            make_settings,
            redis_topology="sentinel",
            redis_url=f"redis://app:{secured.app_password}@127.0.0.1/0",
            redis_sentinels=deployment.addresses,
            redis_key_prefix=secured.prefix,
        )
        async with serve(settings, app_for_failover(settings)) as service:
            ready = (await service.client.get("/health/ready")).json()
            assert ready["redis"]["topology"] == "sentinel"
            before = await write_state(service.client)
            wait_replicated(deployment.master(), replicas=2)
            await check_state(service.client, before)
    finally:
        deployment.stop()
{%- if cookiecutter.use_realtime %}


async def test_realtime_follows_a_sentinel_failover_under_load_and_no_worker_stays_deaf(
    make_settings: SettingsFactory, deployment: LocalSentinelSet
) -> None:
    settings = failover_settings(make_settings, **sentinel_settings(deployment))
    old_master = deployment.master()

    async def failover() -> None:
        old_master.kill()
        await asyncio.to_thread(
            wait_for, lambda: deployment.master_port() != old_master.port, "a new master", 20
        )

    after = await realtime_through_failover(
        settings, lambda: wait_replicated(old_master, replicas=2), failover, "through"
    )

    stream_key = realtime_stream_key(settings, "through")
    newest = send_command(deployment.master_port(), "XREVRANGE", stream_key, "+", "-", "COUNT", "1")
    assert f"{after[-1].split(':')[1]}-0".encode() in newest  # published to the new master
{%- endif %}
