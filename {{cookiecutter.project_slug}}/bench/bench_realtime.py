"""Real-time latency, from publish to receipt at each client, beside Redis alone.

Starts its own redis-server, then, in interleaved rounds:
* fan-out, at each rate in --rates (messages a second):
  - Redis alone: one redis-py subscriber, and PUBLISH of a timestamp at that rate;
  - the service: two uvicorn server processes (one worker each, as two containers would run
    them), --clients WebSocket clients spread over them on one topic, and a publisher in a
    process of its own (tests/realtime_publisher.py, several threads) POSTing messages to
    /realtime/topics/{topic}/messages, each stamped with its send time;
* a slow client: --slow-rate messages a second of 1 KiB to --few clients, first alone, then
  beside one more client that stops reading: the others' latency, and how the stalled one
  ended (1013: closed for falling behind).

For each it prints p50, p99 and the largest latency over every (message, client) pair, how
many arrived, the rate the publisher reached, and how many clients the service closed with
1013 (fallen too far behind). The clients share this process; on a small machine they, the
publisher, the servers and Redis compete for the CPU: the figures are the whole path's.

    python bench/bench_realtime.py [--clients 200] [--rates 250,500,1000] [--seconds 5]
        [--few 20] [--slow-rate 500] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from socket import SO_RCVBUF, SOL_SOCKET

from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "src")]

from {{ cookiecutter.package_name }}.settings import Settings  # noqa: E402

from tests.processes import server_process  # noqa: E402
from tests.realtime_clients import (  # noqa: E402
    ORIGIN,
    publisher_process,
    subscribed_sockets,
    visitor,
)
from tests.redis_servers import RedisServer  # noqa: E402
from tests.service import settings_for_test  # noqa: E402

TOPIC = "bench"
LANE_RATE = 100  # messages a second one publishing thread is asked for
SLOW_PAD = 1000  # characters: the slow-client runs send messages of about 1 KiB


@dataclass
class Received:
    """What the clients got: a latency per (message, client), the send times seen, and the
    close codes of clients the service closed."""

    latencies: list[float] = field(default_factory=list)
    stamps: set[float] = field(default_factory=set)
    closed: list[int] = field(default_factory=list)
    server_cpu: float = 0.0  # seconds the servers spent, publishing and delivering

    def rate(self) -> float:
        """The rate messages were sent at, from their stamps (publisher start-up excluded)."""
        if len(self.stamps) < 2:
            return 0.0
        return (len(self.stamps) - 1) / (max(self.stamps) - min(self.stamps))

    def summary(self, name: str, expected: int) -> str:
        if not self.latencies:
            return f"{name:<40} nothing arrived (of {expected})"
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        shed = f"   closed with 1013: {self.closed.count(1013)}" if self.closed else ""
        cpu = self.server_cpu / len(self.latencies) * 1e6
        server = f"   server CPU {cpu:.0f} us a delivery" if self.server_cpu else ""
        return (
            f"{name:<40} p50 {cuts[49] * 1e3:8.2f} ms   p99 {cuts[98] * 1e3:8.2f} ms   "
            f"max {max(self.latencies) * 1e3:8.2f} ms   arrived {len(self.latencies)}/{expected}"
            f"   sent at {self.rate():.0f}/s{shed}{server}"
        )


async def receive(ws: ClientConnection, into: Received) -> None:
    """Until 2 s pass without a frame (all sent), or the service closes the connection."""
    while True:
        try:
            text = await asyncio.wait_for(ws.recv(), timeout=2)
        except TimeoutError:
            return
        except ConnectionClosed as closed:
            into.closed.append(closed.rcvd.code if closed.rcvd else 1006)
            return
        frame = json.loads(text)
        if frame.get("type") == "message":
            into.latencies.append(time.perf_counter() - frame["data"]["t"])
            into.stamps.add(frame["data"]["t"])


async def redis_alone(url: str, rate: float, seconds: float) -> str:
    received = Received()
    async with Redis.from_url(url) as publisher, Redis.from_url(url) as listener:
        pubsub = listener.pubsub()
        await pubsub.subscribe("bench-alone")
        await pubsub.get_message(timeout=1)  # the confirmation

        async def listen() -> None:
            while (message := await pubsub.get_message(timeout=1)) is not None:
                stamp = float(message["data"])
                received.latencies.append(time.perf_counter() - stamp)
                received.stamps.add(stamp)

        listening = asyncio.create_task(listen())
        count, started = int(rate * seconds), time.monotonic()
        for n in range(count):
            await publisher.publish("bench-alone", repr(time.perf_counter()))
            await asyncio.sleep(max(0.0, started + (n + 1) / rate - time.monotonic()))
        await listening
        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
    return received.summary(f"Redis alone, {rate:g}/s (1 subscriber)", count)


async def service(
    settings: Settings,
    clients: int,
    rate: float,
    seconds: float,
    stalled: bool = False,
    options: Sequence[str] = (),
    pad: int = 0,
) -> str:
    received = Received()
    count = int(rate * seconds)
    async with AsyncExitStack() as stack:
        workers = [
            await stack.enter_async_context(server_process(settings, *options)) for _ in range(2)
        ]
        user = await stack.enter_async_context(visitor(workers[0]))
        sockets = await subscribed_sockets(
            stack, workers, user.headers, TOPIC, each=max(1, clients // 2)
        )
        receiving = [asyncio.create_task(receive(ws, received)) for ws in sockets]
        name = f"service, {rate:g}/s ({len(sockets)} clients)"
        if stalled:
            # One more client that reads nothing: a small receive buffer, as a phone's.
            (slow,) = await subscribed_sockets(stack, workers[:1], user.headers, TOPIC)
            slow.transport.get_extra_info("socket").setsockopt(SOL_SOCKET, SO_RCVBUF, 32_768)
            name = f"service, {rate:g}/s ({len(sockets)} + 1 stalled)"
        lanes = ("--lanes", str(math.ceil(rate / LANE_RATE)), "--stamp", "--pad", str(pad))
        cpu_before = sum(worker.cpu_seconds() for worker in workers)
        await publisher_process(workers, user.headers, TOPIC, count, rate, *lanes)
        await asyncio.gather(*receiving)
        received.server_cpu = sum(worker.cpu_seconds() for worker in workers) - cpu_before
        if stalled:
            ended = Received()
            await receive(slow, ended)  # what it left unread, then how it was closed
            codes = ", ".join(map(str, ended.closed)) or "not closed"
            name = f"{name[:-1]}: {codes})"
    return received.summary(name, count * len(sockets))


def parse_rates(text: str) -> list[float]:
    return [float(rate) for rate in text.split(",")]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rates", type=parse_rates, default=[250.0, 500.0, 1000.0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--few", type=int, default=20, help="clients beside the stalled one")
    parser.add_argument("--slow-rate", type=float, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--uvicorn", action="append", default=[], help="an option for uvicorn (repeatable)"
    )
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
            print(f"{args.seconds:g} s a run, {args.rounds} interleaved rounds:")
            for _ in range(args.rounds):
                for rate in args.rates:
                    print(await redis_alone(redis.url, rate, args.seconds), flush=True)
                    line = await service(
                        settings, args.clients, rate, args.seconds, options=args.uvicorn
                    )
                    print(line, flush=True)
                slow = partial(service, settings, args.few, args.slow_rate, args.seconds)
                for stalled in (False, True):
                    print(await slow(stalled, args.uvicorn, SLOW_PAD), flush=True)
        finally:
            redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
