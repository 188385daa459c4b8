"""What the rate limiter costs, measured against a real Redis.

Serves one trivial route three ways from one uvicorn worker and loads each in turn:

* bare:    no limiter, no Redis
* limited: the rate limiter (one EVALSHA per request)
* get:     no limiter, one plain Redis GET per request instead

and prints requests/s for each and the ratio limited / get. The limiter's budget is one
simple round trip, so the ratio should be at least 0.9. Each round measures the three
routes back to back (in a rotating order) and the ratio is the median of the rounds'
ratios, so drift in the machine's speed cancels out. On Linux with 2+ CPUs the server
gets CPU 0 and Redis and the load generator the others, so they do not compete.

    python bench/bench_ratelimit.py                  # starts its own redis-server
    python bench/bench_ratelimit.py --redis-url redis://localhost:6379/0

Uses `wrk` when it is installed (Debian: apt-get install wrk), else a small built-in
load generator in a separate process; the figures of the two are not comparable with
each other, only within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.ratelimit import rate_limit_exempt
from {{ cookiecutter.package_name }}.redis_client import RedisDep

ROUTES = {"bare": "/bench/bare", "limited": "/bench/limited", "get": "/bench/get"}
_CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
SERVER_CPUS = set(_CPUS[:1]) if len(_CPUS) > 1 else set()
LOAD_CPUS = set(_CPUS[1:]) if len(_CPUS) > 1 else set()


def make_bench_app() -> FastAPI:
    """The service's own app, plus the three routes (uvicorn calls this in the server)."""
    app = create_app()

    @app.get("/bench/bare")
    @rate_limit_exempt
    async def bare() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/bench/limited")
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/bench/get")
    @rate_limit_exempt
    async def get(redis: RedisDep) -> dict[str, bool]:
        await redis.get("bench:key")
        return {"ok": True}

    return app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


async def _connection_loop(port: int, request: bytes, deadline: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while time.monotonic() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
            await reader.readexactly(int(match[1]) if match else 0)
            done += 1
    finally:
        writer.close()
    return done


def _load_process(port: int, path: str, connections: int, seconds: float, queue: Any) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()

    async def run() -> int:
        deadline = time.monotonic() + seconds
        counts = await asyncio.gather(
            *(_connection_loop(port, request, deadline) for _ in range(connections))
        )
        return sum(counts)

    queue.put(asyncio.run(run()))


def pin(pid: int, cpus: set[int]) -> None:
    """Keep a process on some CPUs (Linux), so server and load do not compete."""
    if hasattr(os, "sched_setaffinity") and cpus:
        os.sched_setaffinity(pid, cpus)


def requests_per_second(port: int, path: str, connections: int, seconds: float) -> float:
    wrk = shutil.which("wrk")
    if wrk:
        command = [wrk, "-t1", f"-c{connections}", f"-d{max(round(seconds), 1)}s",
                   f"http://127.0.0.1:{port}{path}"]  # fmt: skip
        if LOAD_CPUS and shutil.which("taskset"):
            command = ["taskset", "-c", ",".join(map(str, sorted(LOAD_CPUS))), *command]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        match = re.search(r"Requests/sec:\s+([\d.]+)", output)
        if not match or "Non-2xx" in output or "Socket errors" in output:
            raise RuntimeError(f"wrk reported errors:\n{output}")
        return float(match[1])
    queue: Any = multiprocessing.Queue()
    worker = multiprocessing.Process(
        target=_load_process, args=(port, path, connections, seconds, queue)
    )
    worker.start()
    if worker.pid is not None:
        pin(worker.pid, LOAD_CPUS)
    total: int = queue.get()
    worker.join()
    return total / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument(
        "--topology",
        default="standalone",
        choices=["standalone", "sentinel", "cluster"],
        help="REDIS_TOPOLOGY for --redis-url (the Redis this script starts is standalone)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="load per route and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="load per route before measuring (0: none)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        redis_process = None
        redis_url = args.redis_url
        if redis_url is None:
            redis_port = free_port()
            redis_process = subprocess.Popen(
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", scratch],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            pin(redis_process.pid, LOAD_CPUS)
            wait_for_port(redis_port)
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
        app_port = free_port()
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "REDIS_TOPOLOGY": args.topology if args.redis_url else "standalone",
            "RATE_LIMIT_DEFAULT": "1000000000/second",
            "LOG_LEVEL": "WARNING",
            "APP_ENV": "development",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench_ratelimit:make_bench_app", "--factory",
             "--app-dir", str(Path(__file__).parent), "--port", str(app_port),
             "--no-access-log", "--no-proxy-headers", "--log-level", "warning"],
            env=env,
        )  # fmt: skip
        pin(server.pid, SERVER_CPUS)
        figures: dict[str, list[float]] = {name: [] for name in ROUTES}
        try:
            wait_for_port(app_port)
            for path in ROUTES.values() if args.warmup > 0 else ():
                requests_per_second(app_port, path, args.connections, args.warmup)  # warm up
            names = list(ROUTES)
            for round_number in range(args.rounds):
                shift = round_number % len(names)
                for name in names[shift:] + names[:shift]:
                    figures[name].append(
                        requests_per_second(app_port, ROUTES[name], args.connections, args.seconds)
                    )
        finally:
            server.terminate()
            server.wait(timeout=10)
            if redis_process is not None:
                redis_process.terminate()
                redis_process.wait(timeout=10)

    medians = {name: statistics.median(values) for name, values in figures.items()}
    tool = "wrk" if shutil.which("wrk") else "built-in load generator"
    print(f"uvicorn, 1 worker, {args.connections} connections, {tool}, median of {args.rounds}:")
    for name, value in medians.items():
        rounds = ", ".join(f"{figure:.0f}" for figure in figures[name])
        print(f"  {name:<8} {value:>10.0f} req/s   (rounds: {rounds})")
    ratios = [
        limited / get for limited, get in zip(figures["limited"], figures["get"], strict=True)
    ]
    ratio = statistics.median(ratios)
    print(
        f"  limited / get = {ratio:.2f}  (median of the rounds' ratios; at least 0.90 means the "
        "limiter costs no more than one GET)"
    )
    if SERVER_CPUS:
        print(f"  server on CPU {sorted(SERVER_CPUS)}, Redis and load on CPUs {sorted(LOAD_CPUS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
