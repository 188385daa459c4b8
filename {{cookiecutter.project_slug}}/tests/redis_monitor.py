"""What a Redis server executed during a block of code, from MONITOR.

MONITOR marks commands run inside Lua scripts as coming from "lua", so a test can count
the commands clients sent apart from the work a script did, and can tell a request that
only read from one that also wrote. MONITOR cannot tell a pipeline from separate round
trips; the server's count of reads from its clients can (`count_round_trips`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from redis.asyncio import Redis

# Commands that change data (the ones our scripts and routes use, and their kin).
WRITE_COMMANDS = frozenset(
    {
        "append", "copy", "decr", "decrby", "del", "expire", "expireat", "getdel", "getex",
        "hdel", "hincrby", "hset", "hsetnx", "incr", "incrby", "incrbyfloat", "lpush",
        "mset", "persist", "pexpire", "pexpireat", "psetex", "rename", "rpush", "sadd",
        "set", "setex", "setnx", "srem", "unlink", "zadd", "zincrby", "zrem",
        "zremrangebyscore",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Executed:
    name: str
    args: tuple[str, ...]
    from_script: bool


@dataclass
class Recording:
    executed: list[Executed] = field(default_factory=list)

    @property
    def round_trips(self) -> list[str]:
        """Commands clients sent (one round trip each, unless pipelined)."""
        return [command.name for command in self.executed if not command.from_script]

    def round_trips_touching(self, fragment: str) -> list[str]:
        """Round trips whose arguments mention `fragment` (a key's hash tag, say): what one
        feature cost, whatever other features did in the same request."""
        return [
            command.name
            for command in self.executed
            if not command.from_script and any(fragment in arg for arg in command.args)
        ]

    @property
    def writes(self) -> list[str]:
        return [command.name for command in self.executed if command.name in WRITE_COMMANDS]

    def writes_touching(self, fragment: str) -> list[str]:
        """Writes (by clients or inside scripts) to keys that mention `fragment`."""
        return [
            command.name
            for command in self.executed
            if command.name in WRITE_COMMANDS and any(fragment in arg for arg in command.args)
        ]

    def keys_touched(self) -> Iterable[str]:
        for command in self.executed:
            yield from command.args


async def _infrastructure_clients(client: Redis) -> set[str]:
    """Addresses of the deployment's own connections (sentinels, replicas): not the app's."""
    return {
        str(entry["addr"])
        for entry in await client.client_list()
        if str(entry.get("name", "")).startswith("sentinel-") or "S" in str(entry.get("flags", ""))
    }


@asynccontextmanager
async def record_commands(*urls: str) -> AsyncIterator[Recording]:
    """Record every command the servers at `urls` execute inside the block (but not the
    pings and acknowledgements of sentinels and replicas)."""
    recording = Recording()
    marker = f"end-of-recording-{secrets.token_hex(4)}"
    async with contextlib.AsyncExitStack() as stack:
        markers: list[Redis] = []
        tasks: list[asyncio.Task[None]] = []
        seen: list[asyncio.Event] = []
        for url in urls:
            marker_client = Redis.from_url(url, single_connection_client=True)
            stack.push_async_callback(marker_client.aclose)
            await marker_client.ping()  # connect now, so connecting is not recorded
            ignored = await _infrastructure_clients(marker_client)
            monitor_client = Redis.from_url(url)
            stack.push_async_callback(monitor_client.aclose)
            monitor = await stack.enter_async_context(monitor_client.monitor())
            done = asyncio.Event()

            async def collect(
                monitor: object = monitor, done: asyncio.Event = done, ignored: set[str] = ignored
            ) -> None:
                async for info in monitor.listen():  # type: ignore[attr-defined]
                    words = str(info["command"]).split(" ")
                    if marker in words:
                        done.set()
                        return
                    address = f"{info.get('client_address')}:{info.get('client_port')}"
                    if address in ignored:
                        continue
                    recording.executed.append(
                        Executed(
                            name=words[0].lower(),
                            args=tuple(words[1:]),
                            from_script=info.get("client_type") == "lua",
                        )
                    )

            tasks.append(asyncio.create_task(collect()))
            markers.append(marker_client)
            seen.append(done)
        yield recording
        for marker_client in markers:
            await marker_client.echo(marker)
        async with asyncio.timeout(5):
            for done in seen:
                await done.wait()
        for task in tasks:
            task.cancel()


@dataclass
class RoundTrips:
    count: int = 0


@asynccontextmanager
async def count_round_trips(url: str) -> AsyncIterator[RoundTrips]:
    """How many times clients wrote to the server at `url` inside the block, from the
    server's own count of reads (INFO stats): commands pipelined in one write are one read,
    so one round trip. Only for a server nothing else talks to (no sentinels, replicas or
    MONITOR)."""
    counter = Redis.from_url(url, single_connection_client=True)
    try:
        before = await _reads(counter)
        result = RoundTrips()
        yield result
        result.count = await _reads(counter) - before - 1  # less the INFO that asked
    finally:
        await counter.aclose()


@dataclass(frozen=True)
class Cost:
    """What one request cost Redis: round trips (one request counted) and the commands
    clients sent (the same request again, recorded)."""

    responses: tuple[httpx.Response, httpx.Response]
    round_trips: int
    commands: list[str]


async def cost_of(request: Callable[[], Awaitable[httpx.Response]], url: str) -> Cost:
    """Send `request` twice to a service whose Redis at `url` nothing else talks to."""
    async with count_round_trips(url) as round_trips:
        counted = await request()
    async with record_commands(url) as recording:
        recorded = await request()
    return Cost((counted, recorded), round_trips.count, recording.round_trips)


async def _reads(client: Redis) -> int:
    return int((await client.info("stats"))["total_reads_processed"])
