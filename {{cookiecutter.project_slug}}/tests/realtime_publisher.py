"""A publisher in a process of its own, for the real-time tests and benchmark: POSTs `count`
messages ({"n": 0}, {"n": 1}, ...) to a topic one after the other, through each server in
turn, each retried until it is acknowledged (202), and prints each acknowledged position on a
line. With `--lanes K`, K threads share the messages (n modulo K), each on its own
connections, to reach rates one request at a time cannot; positions then come out of order.
With `--stamp`, each message also carries the time it was sent (`"t"`, time.perf_counter():
the system's monotonic clock, the same in every process here); with `--pad BYTES`, that many
random characters (`"pad"`), for messages of a given size.

    python -m tests.realtime_publisher TOPIC COUNT [--rate PER_SECOND] [--lanes K] [--stamp]
        [--pad BYTES] BASE_URL...

The request headers (a session cookie and its CSRF token) come as JSON in PUBLISHER_HEADERS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

GIVE_UP_SECONDS = 30


def publish(http: httpx.Client, topic: str, n: int, args: argparse.Namespace) -> str | None:
    """The message's position once acknowledged; None after GIVE_UP_SECONDS of refusals."""
    give_up = time.monotonic() + GIVE_UP_SECONDS
    while time.monotonic() < give_up:
        data: dict[str, object] = {"n": n}
        if args.pad:
            data["pad"] = secrets.token_urlsafe(args.pad)[: args.pad]
        if args.stamp:
            data["t"] = time.perf_counter()
        try:
            answer = http.post(f"/realtime/topics/{topic}/messages", json={"data": data})
        except httpx.TransportError:
            answer = None
        if answer is not None and answer.status_code == 202:
            position: str = answer.json()["id"]
            return position
        time.sleep(0.02)  # Redis is away (503): ask again
    return None


def lane(args: argparse.Namespace, headers: dict[str, str], first: int, started: float) -> bool:
    """Messages first, first + lanes, ... at their times; False when one is refused for good."""
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(httpx.Client(base_url=url, headers=headers, timeout=5))
            for url in args.base_urls
        ]
        for n in range(first, args.count, args.lanes):
            position = publish(servers[n % len(servers)], args.topic, n, args)
            if position is None:
                print(f"message {n} not acknowledged in {GIVE_UP_SECONDS} s", file=sys.stderr)
                return False
            print(position, flush=True)
            if args.rate:
                time.sleep(max(0.0, started + (n + 1) / args.rate - time.monotonic()))
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("topic")
    parser.add_argument("count", type=int)
    parser.add_argument("--rate", type=float, default=0, help="messages per second (0: at once)")
    parser.add_argument("--lanes", type=int, default=1, help="threads publishing side by side")
    parser.add_argument("--stamp", action="store_true", help='add the send time as "t"')
    parser.add_argument("--pad", type=int, default=0, help="add this many random characters")
    parser.add_argument("base_urls", nargs="+")
    args = parser.parse_args()
    headers = json.loads(os.environ.get("PUBLISHER_HEADERS", "{}"))
    started = time.monotonic()
    with ThreadPoolExecutor(args.lanes) as pool:
        lanes = [pool.submit(lane, args, headers, first, started) for first in range(args.lanes)]
        return 0 if all(each.result() for each in lanes) else 1


if __name__ == "__main__":
    sys.exit(main())
