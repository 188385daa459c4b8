"""Building the client: the right class per topology, options from REDIS_URL."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from {{ cookiecutter.package_name }}.redis_client import (
    BoundedRedis,
    BoundedRedisCluster,
    SentinelBlockingConnectionPool,
    build_client,
    close,
    pack_commands,
    url_options,
)

from tests.service import SettingsFactory

pytestmark = pytest.mark.anyio


def test_credentials_database_and_address_come_from_the_url() -> None:
    host, port, options = url_options("redis://app:s3cret@redis.internal:6380/2")
    assert (host, port) == ("redis.internal", 6380)
    assert (options["username"], options["password"], options["db"]) == ("app", "s3cret", 2)
    assert "ssl" not in options


def test_a_rediss_url_turns_tls_on_and_keeps_its_tls_options() -> None:
    _, _, options = url_options(
        "rediss://app:pw@redis.example:6379/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem"
    )
    assert options["ssl"] is True
    assert options["ssl_cert_reqs"] == "required"
    assert options["ssl_ca_certs"] == "/etc/ca.pem"


async def test_standalone_gets_a_bounded_client_on_a_blocking_pool(
    make_settings: SettingsFactory,
) -> None:
    client = build_client(
        make_settings(redis_url="redis://localhost:6379/0", redis_max_connections=7)
    )
    try:
        assert isinstance(client, BoundedRedis)
        assert client.connection_pool.max_connections == 7
    finally:
        await close(client)


async def test_cluster_gets_a_cluster_client_seeded_from_every_address(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(
        redis_topology="cluster",
        redis_url="redis://app:pw@node-a:7000/0",
        redis_cluster_nodes=["node-b:7001", "node-c:7002"],
    )
    client = build_client(settings)
    try:
        assert isinstance(client, BoundedRedisCluster)
        seeds = {(node.host, node.port) for node in client.nodes_manager.startup_nodes.values()}
        assert seeds == {("node-a", 7000), ("node-b", 7001), ("node-c", 7002)}
    finally:
        await close(client)


async def test_sentinel_gets_a_master_client_that_asks_the_sentinels(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(
        redis_topology="sentinel",
        redis_url="redis://app:pw@ignored:6379/3",
        redis_sentinels=["sentinel-1:26379", "sentinel-2:26379"],
    )
    client = build_client(settings)
    try:
        assert isinstance(client, BoundedRedis)
        pool = client.connection_pool
        assert isinstance(pool, SentinelBlockingConnectionPool)
        assert pool.service_name == "mymaster"
        assert pool.connection_kwargs["db"] == 3
        assert pool.connection_kwargs["username"] == "app"
    finally:
        await close(client)


def test_the_request_path_packs_commands_byte_for_byte_as_redis_py_does() -> None:
    commands = [
        ("EVALSHA", "0123abcd", 2, "p:{c:v1:items}:e:ab", "p:{c:v1:items}:l:ab", 1, 0.25),
        ("EVALSHA", "ffee", 1, b"raw\x00bytes", "caf\u00e9", -7, 1e20, ""),
    ]
    expected = b"".join(Connection().pack_commands(commands))
    assert pack_commands(commands) == expected


@pytest.mark.parametrize("value", [True, None, ["a"]])
def test_packing_refuses_what_redis_py_refuses(value: object) -> None:
    with pytest.raises(DataError):
        pack_commands([("SET", "key", value)])
