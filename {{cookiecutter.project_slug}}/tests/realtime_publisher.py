"""A publisher in a process of its own, for the real-time tests: POSTs `count` messages
({"n": 0}, {"n": 1}, ...) to a topic one after the other, through each server in turn, each
retried until it is acknowledged (202), and prints each acknowledged position on a line.

    python -m tests.realtime_publisher TOPIC COUNT [--rate PER_SECOND] BASE_URL...

The request headers (a session cookie and its CSRF token) come as JSON in PUBLISHER_HEADERS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

import httpx

GIVE_UP_SECONDS = 30


def publish(http: httpx.Client, topic: str, n: int) -> str | None:
    """The message's position once acknowledged; None after GIVE_UP_SECONDS of refusals."""
    give_up = time.monotonic() + GIVE_UP_SECONDS
    while time.monotonic() < give_up:
        try:
            answer = http.post(f"/realtime/topics/{topic}/messages", json={"data": {"n": n}})
        except httpx.TransportError:
            answer = None
        if answer is not None and answer.status_code == 202:
            position: str = answer.json()["id"]
            return position
        time.sleep(0.02)  # Redis is away (503): ask again
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("topic")
    parser.add_argument("count", type=int)
    parser.add_argument("--rate", type=float, default=0, help="messages per second (0: at once)")
    parser.add_argument("base_urls", nargs="+")
    args = parser.parse_args()
    headers = json.loads(os.environ.get("PUBLISHER_HEADERS", "{}"))
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(httpx.Client(base_url=url, headers=headers, timeout=5))
            for url in args.base_urls
        ]
        for n in range(args.count):
            position = publish(servers[n % len(servers)], args.topic, n)
            if position is None:
                print(f"message {n} not acknowledged in {GIVE_UP_SECONDS} s", file=sys.stderr)
                return 1
            print(position, flush=True)
            if args.rate:
                time.sleep(max(0.0, started + (n + 1) / args.rate - time.monotonic()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
