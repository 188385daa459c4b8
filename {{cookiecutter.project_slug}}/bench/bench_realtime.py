"""Real-time latency, from publish to receipt at each client, beside Redis alone.

Starts its own redis-server, then, in one interleaved run:
* Redis alone: one redis-py subscriber, and PUBLISH of a timestamp at RATE a second;
* the service: two uvicorn server processes (one worker each, as two containers would run),
  CLIENTS WebSocket clients spread over them, all on one topic, and messages published at
  RATE a second through POST /realtime/topics/{topic}/messages, each carrying its send time.

For each, it prints p50, p99 and the largest latency over every (message, client) pair, and
how many of them arrived. Clients and publisher share this process and its clock, so on a
small machine they compete with the servers for the CPU: the figures are the whole path's.

    python bench/bench_realtime.py [--clients 200] [--rate 1000] [--seconds 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "src")]

from {{ cookiecutter.package_name }}.settings import Settings  # noqa: E402

from tests.realtime_clients import (  # noqa: E402
    ORIGIN,
    server_process,
    subscribed_sockets,
    visitor,
)
from tests.redis_servers import RedisServer  # noqa: E402
from tests.service import settings_for_test  # noqa: E402

TOPIC = "bench"


def summary(name: str, latencies: list[float], expected: int, rate: float) -> str:
    if not latencies:
        return f"{name:<34} nothing arrived (of {expected})"
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return (
        f"{name:<34} p50 {cuts[49] * 1e3:8.2f} ms   p99 {cuts[98] * 1e3:8.2f} ms   "
        f"max {max(latencies) * 1e3:8.2f} ms   arrived {len(latencies)}/{expected}   "
        f"published {rate:.0f}/s"
    )


async def paced(
    rate: float, seconds: float, send: Callable[[], Awaitable[None]]
) -> tuple[int, float]:
    """Call `send()` `rate` times a second for `seconds`, each after the one before: how
    many times, at what rate (lower than asked when sending cannot keep up)."""
    count = int(rate * seconds)
    started = time.monotonic()
    for n in range(count):
        await send()
        delay = started + (n + 1) / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    return count, count / (time.monotonic() - started)


async def redis_alone(url: str, rate: float, seconds: float) -> str:
    latencies: list[float] = []
    async with Redis.from_url(url) as publisher, Redis.from_url(url) as listener:
        pubsub = listener.pubsub()
        await pubsub.subscribe("bench-alone")
        await pubsub.get_message(timeout=1)  # the confirmation

        async def receive() -> None:
            while True:
                message = await pubsub.get_message(timeout=1)
                if message is None:
                    return
                latencies.append(time.perf_counter() - float(message["data"]))

        receiving = asyncio.create_task(receive())

        async def send() -> None:
            await publisher.publish("bench-alone", repr(time.perf_counter()))

        sent, achieved = await paced(rate, seconds, send)
        await receiving
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    return summary("Redis alone (1 subscriber)", latencies, sent, achieved)


async def service(settings: Settings, clients: int, rate: float, seconds: float) -> str:
    latencies: list[float] = []
    async with AsyncExitStack() as stack:
        workers = [await stack.enter_async_context(server_process(settings)) for _ in range(2)]
        user = await stack.enter_async_context(visitor(workers[0]))
        sockets = await subscribed_sockets(
            stack, workers, user.headers, TOPIC, each=max(1, clients // 2)
        )

        async def receive(ws: ClientConnection) -> None:
            while True:
                try:
                    text = await asyncio.wait_for(ws.recv(), timeout=2)
                except Exception:  # quiet for 2 s (all sent), or closed (1013: too slow)
                    return
                frame = json.loads(text)
                if frame.get("type") == "message":
                    latencies.append(time.perf_counter() - frame["data"]["t"])

        receiving = [asyncio.create_task(receive(ws)) for ws in sockets]
        publishers = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=worker.base_url, headers=user.headers)
            )
            for worker in workers
        ]
        turn = 0

        async def send() -> None:
            nonlocal turn
            turn += 1
            await publishers[turn % 2].post(
                f"/realtime/topics/{TOPIC}/messages", json={"data": {"t": time.perf_counter()}}
            )

        sent, achieved = await paced(rate, seconds, send)
        await asyncio.gather(*receiving)
    name = f"service (2 workers, {len(sockets)} clients)"
    return summary(name, latencies, sent * len(sockets), achieved)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1000, help="messages a second")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        redis = RedisServer(directory=Path(directory)).start()
        try:
            settings = settings_for_test(
                redis_url=redis.url,
                realtime_allowed_origins=[ORIGIN],
{%- if cookiecutter.rate_limiting != "none" %}
                rate_limit_default="1000000000/second",
{%- endif %}
{%- if cookiecutter.use_sessions %}
                password_hash_cost=10,
                session_secret="b" * 40,
{%- endif %}
                log_level="ERROR",
            )
            print(f"{args.rate:g} messages a second for {args.seconds:g} s, "
                  f"{args.rounds} interleaved rounds:")  # fmt: skip
            for _ in range(args.rounds):
                print(await redis_alone(redis.url, args.rate, args.seconds), flush=True)
                print(await service(settings, args.clients, args.rate, args.seconds), flush=True)
        finally:
            redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
