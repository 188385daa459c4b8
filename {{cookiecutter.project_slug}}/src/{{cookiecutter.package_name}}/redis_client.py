"""One Redis client per process, built for the configured topology.

The client never re-sends a command by itself: a re-sent EVALSHA or INCR after a
timeout would be counted twice, so every layer above decides what a failure means
(the cache serves uncached, the limiter fails open or closed, sessions answer 503).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from typing import Annotated, Any, TypeAlias

from fastapi import Depends, Request
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    DataError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from .settings import Settings
from .signals import UNHEARD, Signals

logger = logging.getLogger(__name__)

RedisClient: TypeAlias = Redis | RedisCluster

# Errors that mean "Redis cannot serve this now" (down, slow, failing over), as opposed
# to errors that mean a bug in a command or script.
REDIS_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,  # includes MaxConnectionsError, BusyLoadingError, MasterNotFoundError
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,  # a write reached a replica during a failover
    OutOfMemoryError,  # maxmemory reached under noeviction: writes are refused
    RedisClusterException,
)
# The same, plus what a deadline (asyncio.timeout) or a raw socket raises.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (*REDIS_UNAVAILABLE_ERRORS, TimeoutError, OSError)


class RedisUnavailableError(Exception):
    """Redis did not answer, or the circuit breaker says not to ask it now."""


# Lua scripts by SHA1, named after their purpose ("cache.lookup"), filled as scripts load
# (scripts.LuaScript): an EVALSHA is signalled under its script's name, not its hash.
SCRIPT_NAMES: dict[str, str] = {}


def command_kind(command: Sequence[Any]) -> str:
    """What a command is, for its latency figures: its name, or its script's name."""
    name = command[0]
    name = (name.decode() if isinstance(name, bytes) else str(name)).upper()
    if name in ("EVALSHA", "EVALSHA_RO") and len(command) > 1:
        sha = command[1]
        return SCRIPT_NAMES.get(sha.decode() if isinstance(sha, bytes) else str(sha), name)
    return name


def no_retry() -> Retry:
    return Retry(NoBackoff(), retries=0)


class SentinelBlockingConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel-managed pool that waits for a free connection instead of failing."""


class _FairQueue:
    """Commands wait for a free connection in arrival order, up to the pool timeout.

    redis-py's BlockingConnectionPool is not first-come first-served: a newcomer can take a
    connection that was just freed for a waiter, so under sustained load a waiter can be
    passed over until its timeout. A FIFO semaphore of the pool's size in front of it keeps
    every wait bounded (tests/integration/test_redis_client.py: 64 callers on 50
    connections). Cluster nodes have no blocking pool at all (they raise
    MaxConnectionsError); this gives them one.

    It also signals how long each command waited for a connection (`redis_pool_wait`) and
    how long Redis took to answer (`redis_command`, by command_kind).
    """

    _slots: asyncio.Semaphore
    _slot_timeout: float
    signals: Signals = UNHEARD

    def _init_slots(self, size: int, timeout: float) -> None:
        self._slots = asyncio.Semaphore(size)
        self._slot_timeout = timeout

    async def take_slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # free: no waiting, so no deadline to arm
            self.signals.observe("redis_pool_wait", 0.0)
            return
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._slot_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise RedisConnectionError("no free Redis connection within the pool timeout") from None
        finally:
            self.signals.observe("redis_pool_wait", time.perf_counter() - started)

    def free_slot(self) -> None:
        self._slots.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.take_slot()
        started = time.perf_counter()
        try:
            return await super().execute_command(*args, **kwargs)  # type: ignore[misc, unused-ignore]
        finally:
            self.free_slot()
            self.signals.observe("redis_command", time.perf_counter() - started, command_kind(args))


class BoundedRedis(_FairQueue, Redis):  # type: ignore[misc, unused-ignore]  # (a clash inside redis-py)
    """A standalone or Sentinel client whose callers queue fairly for connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pool = self.connection_pool
        self._init_slots(pool.max_connections, getattr(pool, "timeout", None) or 1.0)

    async def send_together(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """`run_together` on one connection, the short way: the request path's hot spot.

        It holds a slot of the fair queue, so the pool has a connection for it without
        waiting; the commands go out in one write and their replies are read in order.
        The connection's own error handling applies: a timeout or a broken socket
        disconnects it before it goes back to the pool, so no reply is ever read by the
        wrong caller.
        """
        await self.take_slot()
        pool = self.connection_pool
        try:
            try:
                connection = pool.get_available_connection()  # type: ignore[no-untyped-call, unused-ignore]
            except RedisConnectionError:  # someone took connections outside the queue
                connection = await pool.get_connection()  # type: ignore[no-untyped-call, unused-ignore]
            else:
                try:
                    await pool.ensure_connection(connection)
                except BaseException:
                    await pool.release(connection)
                    raise
            started = time.perf_counter()
            try:
                return await _exchange(connection, pack_commands(commands), len(commands))
            finally:
                await pool.release(connection)
                took = time.perf_counter() - started
                for command in commands:  # each waited for the one round trip
                    self.signals.observe("redis_command", took, command_kind(command))
        finally:
            self.free_slot()


async def _exchange(connection: Connection, data: bytes, count: int) -> list[Any]:
    """One write and `count` replies under one deadline, the socket timeout: redis-py would
    arm one per reply and run the write in a task of its own. As in redis-py, a timeout or
    a broken socket disconnects the connection, so no reply is left for the next caller."""
    # A PING first if the connection idled past REDIS_HEALTH_CHECK_INTERVAL_SECONDS.
    await connection.check_health()  # type: ignore[no-untyped-call, unused-ignore]
    try:
        async with asyncio.timeout(connection.socket_timeout):
            await connection._send_packed_command([data])
            replies: list[Any] = []
            for _ in range(count):
                try:
                    replies.append(await connection.read_response(timeout=math.inf))
                except ResponseError as error:  # this command's own error
                    replies.append(error)
            return replies
    except TimeoutError:
        await connection.disconnect(nowait=True)
        raise RedisTimeoutError(f"Timeout talking to Redis {_address(connection)}") from None
    except OSError as error:
        await connection.disconnect(nowait=True)
        address = _address(connection)
        raise RedisConnectionError(f"Error talking to Redis {address}: {error}") from error
    except BaseException:
        await connection.disconnect(nowait=True)
        raise


def _address(connection: Connection) -> str:
    return f"{getattr(connection, 'host', '?')}:{getattr(connection, 'port', '?')}"


def _encode(value: Any) -> bytes:
    """Arguments as redis-py encodes them (bytes, str, int, float), bool refused the same."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode()
    if isinstance(value, float):
        return repr(value).encode()
    raise DataError(f"invalid argument of type {type(value).__name__}: {value!r}")


def pack_commands(commands: Sequence[Sequence[Any]]) -> bytes:
    """Commands in the Redis protocol (RESP arrays of bulk strings), ready for one write."""
    parts: list[bytes] = []
    for command in commands:
        parts.append(b"*%d\r\n" % len(command))
        for argument in command:
            kind = type(argument)
            data = (
                argument.encode()
                if kind is str
                else argument
                if kind is bytes
                else _encode(argument)
            )
            parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


class BoundedRedisCluster(_FairQueue, RedisCluster):  # type: ignore[misc, unused-ignore]
    """A cluster client whose callers queue fairly instead of failing on a full node pool."""

    def __init__(self, *args: Any, pool_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_slots(kwargs.get("max_connections", 100), pool_timeout)


def _connection_options(settings: Settings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.redis_socket_timeout_seconds,
        "socket_connect_timeout": settings.redis_connect_timeout_seconds,
        "health_check_interval": settings.redis_health_check_interval_seconds,
        "retry": no_retry(),
        "client_name": settings.redis_key_prefix,
        # redis-py 8 turns maintenance notifications (a Redis Enterprise feature) on in
        # "auto" mode, and while they are on, the pool stops checking an idle connection
        # before handing it out: after a Redis restart, every pooled connection would fail
        # its next command (tests/integration/test_redis_client.py).
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }


def url_options(url: str) -> tuple[str | None, int, dict[str, Any]]:
    """Host, port and the connection options of a redis:// or rediss:// URL: user,
    password, database and TLS options (`?ssl_ca_certs=...&ssl_cert_reqs=...`)."""
    options: dict[str, Any] = dict(parse_url(url))
    host = options.pop("host", None)
    port = int(options.pop("port", 6379) or 6379)
    options.pop("path", None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return host, port, options


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def build_client(settings: Settings) -> RedisClient:
    """Build the process's client; call it from the lifespan, not at import time."""
    if settings.uses_memory_redis:
        return _memory_client()
    options = _connection_options(settings)
    if settings.redis_topology == "cluster":
        host, port, from_url = url_options(settings.redis_url)
        seeds = [ClusterNode(*_split_address(node)) for node in settings.redis_cluster_nodes]
        if host:
            seeds.insert(0, ClusterNode(host, port))
        from_url.pop("db", None)  # a cluster has database 0 only
        return BoundedRedisCluster(
            startup_nodes=seeds,
            max_connections=settings.redis_max_connections,
            pool_timeout=settings.redis_pool_timeout_seconds,
            **{**from_url, **options},
        )
    if settings.redis_topology == "sentinel":
        # REDIS_URL still carries the data nodes' credentials, database and TLS options;
        # the sentinels say where the master is.
        _, _, data_node = url_options(settings.redis_url)
        sentinel_password = settings.redis_sentinel_password
        sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            [_split_address(address) for address in settings.redis_sentinels],
            sentinel_kwargs={
                "password": sentinel_password.get_secret_value() if sentinel_password else None,
                "socket_timeout": settings.redis_socket_timeout_seconds,
                "socket_connect_timeout": settings.redis_connect_timeout_seconds,
                "retry": no_retry(),
            },
            **options,
            **data_node,
        )
        master: Redis = sentinel.master_for(
            settings.redis_sentinel_service,
            redis_class=BoundedRedis,
            connection_pool_class=SentinelBlockingConnectionPool,
            max_connections=settings.redis_max_connections,
            timeout=settings.redis_pool_timeout_seconds,
        )
        return master
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_seconds,
        **options,
    )
    return BoundedRedis.from_pool(pool)


def attach_signals(client: RedisClient, signals: Signals) -> None:
    """Have the client signal its pool waits and command latencies (not the in-process fake)."""
    if isinstance(client, BoundedRedis | BoundedRedisCluster):
        client.signals = signals


async def run_together(client: RedisClient, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """Send `commands` together: the replies in order, where a command's own error (NOSCRIPT,
    OOM, READONLY) is its reply, as an exception instance. Nothing is re-sent.

    * Standalone and Sentinel: one pipeline (not MULTI) on one connection, so one write and
      one wait; a connection failure or timeout raises.
    * Cluster: every command on its own, all at once, so the wait is one round trip. Each
      goes through redis-py's cluster routing, which follows MOVED and, after a failure,
      rediscovers the slot map for the next command (its pipeline does neither without
      retries); a failure is that command's reply, so a node that is down fails only the
      features whose keys it holds.
    """
    if isinstance(client, BoundedRedis):
        return await client.send_together(commands)
    if isinstance(client, RedisCluster):
        replies = await asyncio.gather(
            *(client.execute_command(*command) for command in commands), return_exceptions=True
        )
        for reply in replies:
            if isinstance(reply, BaseException) and not isinstance(reply, Exception):
                raise reply  # a cancellation is not a reply
        return list(replies)
    pipeline = client.pipeline(transaction=False)  # the in-process fake (REDIS_URL=memory://)
    for command in commands:
        pipeline.execute_command(*command)
    fake_replies: list[Any] = await pipeline.execute(raise_on_error=False)
    return fake_replies


async def prepare(client: RedisClient) -> None:
    """Startup work that would otherwise race under the first burst of requests.

    A cluster client discovers the slot map on first use; many concurrent first commands
    would each try to, and redis-py can then drop connections that others are opening.
    Discover it once, now. If Redis is down, start anyway: the features fail open or
    answer 503 until it is back, and the client discovers the map then.
    """
    if isinstance(client, RedisCluster):
        try:
            await client.initialize()
        except UNAVAILABLE_ERRORS as error:
            logger.warning("Redis Cluster not reachable at startup (%s)", error.__class__.__name__)


async def close(client: RedisClient) -> None:
    """Close the client and, in Sentinel mode, its connections to the sentinels too."""
    await client.aclose()
    if isinstance(client, Redis):
        manager = getattr(client.connection_pool, "sentinel_manager", None)
        if isinstance(manager, Sentinel):
            for sentinel in manager.sentinels:
                await sentinel.aclose()


def _memory_client() -> Redis:
    try:
        import fakeredis
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "REDIS_URL=memory:// needs fakeredis with Lua, from the dev dependency group: "
            "run `make install` (uv sync)"
        ) from error
    logger.warning(
        "REDIS_URL=memory:// - using an in-process fake Redis: data is lost on restart and "
        "not shared between workers. Use it for development only."
    )
    client: Redis = fakeredis.FakeAsyncRedis()
    return client


async def get_redis(request: Request) -> RedisClient:
    # async: FastAPI runs plain functions in a worker thread, a hop per request.
    client: RedisClient = request.app.state.redis
    return client


RedisDep = Annotated[RedisClient, Depends(get_redis)]
