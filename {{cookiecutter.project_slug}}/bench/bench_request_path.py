"""What the request path costs, measured against a real Redis.

Serves the service's own app from one uvicorn worker, with two reference routes beside it:

* bare:  no Redis at all
* get:   one plain redis.asyncio GET, returned as JSON (the naive route)

and, for each enabled feature, its everyday request:

{%- if cookiecutter.use_cache %}
* cache hit:     GET /items/bench, answered from the cache before routing
{%- endif %}
{%- if cookiecutter.use_sessions %}
* session read:  GET /auth/me with a logged-in session
{%- endif %}
{%- if cookiecutter.rate_limiting != "none" %}
* limited:       GET /bench/limited, a trivial route under the default rate limit
{%- endif %}

With several features on, each case pays for all of them at once (a cache hit also gets
its rate-limit decision), in one round trip. The script prints requests/s for each case
and its ratio to `get`: the median of the rounds' ratios, each round measuring every case
back to back in a rotating order, so drift in the machine's speed cancels out.
{%- if cookiecutter.observability != "none" %}

What observability costs: the app is served in several variants, each by a server of its
own: {% if cookiecutter.__metrics %}with its metrics feature only, {% endif %}{% if cookiecutter.__traces %}with its traces feature only (no
endpoint set: what runs until one is), with its traces exported (OTLP/HTTP to a sink that
this script runs), {% endif %}and with neither (what observability=none generates). Each round
measures every case on every variant, one after the other; the script prints each case's
ratio of each variant to the last (the median of the rounds').{% if cookiecutter.__metrics %} The metrics run in
multiprocess mode (PROMETHEUS_MULTIPROC_DIR), as the Dockerfile runs them.{% endif %}
{%- endif %} On Linux
with 2+ CPUs the server gets CPU 0, and Redis and the load generator the others.

    python bench/bench_request_path.py                  # starts its own redis-server
    python bench/bench_request_path.py --redis-url redis://localhost:6379/0

Uses `wrk` when it is installed (Debian: apt-get install wrk), else a small built-in
load generator in a separate process; the figures of the two are not comparable with
each other, only within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
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
{%- if cookiecutter.__traces %}
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
{%- endif %}
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Response

from {{ cookiecutter.package_name }}.main import create_app, enabled_features
from {{ cookiecutter.package_name }}.redis_client import RedisDep

# The references, then each enabled feature's everyday request: case -> path.
CASES = {
    "bare": "/bench/bare",
    "get": "/bench/get",
{%- if cookiecutter.use_cache %}
    "cache hit": "/items/bench",
{%- endif %}
{%- if cookiecutter.use_sessions %}
    "session read": "/auth/me",
{%- endif %}
{%- if cookiecutter.rate_limiting != "none" %}
    "limited": "/bench/limited",
{%- endif %}
}
SETTINGS = {
    "LOG_LEVEL": "WARNING",
    "APP_ENV": "development",
{%- if cookiecutter.use_cache %}
    "CACHE_TTL_SECONDS": "3600",
    "DEMO_COMPUTE_DELAY_MS": "0",
{%- endif %}
{%- if cookiecutter.use_sessions %}
    "PASSWORD_HASH_COST": "10",
    "SESSION_SECRET": "bench-" + "x" * 40,
{%- endif %}
{%- if cookiecutter.rate_limiting != "none" %}
    "RATE_LIMIT_DEFAULT": "1000000000/second",
    "RATE_LIMIT_EXEMPT_PATHS": "/health,/bench/bare,/bench/get",
{%- endif %}
}
# Variant -> the observability features it keeps (BENCH_OBSERVABILITY); the last keeps none.
VARIANTS = {
{%- if cookiecutter.__metrics %}
    "metrics": "metrics",
{%- endif %}
{%- if cookiecutter.__traces %}
    "traces": "traces",
    "traces exported": "traces,exported",
{%- endif %}
    "{% if cookiecutter.observability != "none" %}none{% endif %}": "",
}
OBSERVABILITY = {"metrics", "traces"}
_CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
SERVER_CPUS = set(_CPUS[:1]) if len(_CPUS) > 1 else set()
LOAD_CPUS = set(_CPUS[1:]) if len(_CPUS) > 1 else set()


def make_bench_app() -> FastAPI:
    """The service's own app, plus the bench routes (uvicorn calls this in the server)."""
    kept = set(os.environ.get("BENCH_OBSERVABILITY", "").split(","))
    features = [
        feature
        for feature in enabled_features()
        if feature.name not in OBSERVABILITY or feature.name in kept
    ]
    app = create_app(features=features)

    run = os.environ.get("BENCH_RUN", "")

    @app.get("/bench/bare")
    async def bare(response: Response) -> dict[str, bool]:
        response.headers["X-Bench-Run"] = run  # which run's server this is (see serve)
        return {"ok": True}

    @app.get("/bench/limited")
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/bench/get")
    async def get(redis: RedisDep) -> dict[str, str | None]:
        value = await redis.get("bench:key")
        return {"cached": value.decode() if isinstance(value, bytes) else value}

    return app


def request(
    port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        sent = {"content-type": "application/json", **(headers or {})}
        connection.request(method, path, body=payload, headers=sent)
        response = connection.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def prepare(port: int) -> dict[str, str]:
    """Warm the cache entry and log in; the request headers every case sends."""
    headers: dict[str, str] = {}
{%- if cookiecutter.use_sessions %}
    credentials = {"username": "bench", "password": "correct horse battery"}
    request(port, "POST", "/auth/register", credentials)  # 201, or 409 if it exists
    status, answer = request(port, "POST", "/auth/login", credentials)
    if status != 200:
        raise RuntimeError(f"could not log in: {status}")
    headers["cookie"] = answer["set-cookie"].split(";", 1)[0]
{%- endif %}
{%- if cookiecutter.use_cache %}
    for _ in range(3):
        status, answer = request(port, "GET", CASES["cache hit"])
    if answer.get("x-cache") != "HIT":
        raise RuntimeError(f"the cache did not answer a hit: {status} {answer}")
{%- endif %}
    return headers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve(command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """Start uvicorn (`command`, without its port) on a free port, and return it once it
    answers. The port is checked to be this server's: another process may take a free port
    before uvicorn binds it (then uvicorn exits, and another port is tried)."""
    for _ in range(5):
        port = free_port()
        process = subprocess.Popen([*command, "--port", str(port)], env=env)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            try:
                status, headers = request(port, "GET", CASES["bare"])
                if status == 200 and headers.get("x-bench-run") == env["BENCH_RUN"]:
                    return process, port
            except OSError:
                pass
            time.sleep(0.1)
        process.terminate()
        process.wait(timeout=10)
    raise RuntimeError(f"uvicorn did not start: {' '.join(command)}")


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


def _load_process(
    port: int, path: str, headers: dict[str, str], connections: int, seconds: float, queue: Any
) -> None:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n{lines}\r\n".encode()

    async def run() -> int:
        deadline = time.monotonic() + seconds
        counts = await asyncio.gather(
            *(_connection_loop(port, request, deadline) for _ in range(connections))
        )
        return sum(counts)

    queue.put(asyncio.run(run()))


{% if cookiecutter.__traces -%}
class _Sink(BaseHTTPRequestHandler):
    """Takes OTLP/HTTP exports and throws them away (an empty reply is an empty protobuf)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _sink(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), _Sink).serve_forever()


{% endif -%}
def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used so far, user and system (Linux: /proc; else 0)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(pid: int, cpus: set[int]) -> None:
    """Keep a process on some CPUs (Linux), so server and load do not compete."""
    if hasattr(os, "sched_setaffinity") and cpus:
        os.sched_setaffinity(pid, cpus)


def requests_per_second(
    port: int, path: str, headers: dict[str, str], connections: int, seconds: float
) -> float:
    wrk = shutil.which("wrk")
    if wrk:
        command = [wrk, "-t1", f"-c{connections}", f"-d{max(round(seconds), 1)}s"]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        command.append(f"http://127.0.0.1:{port}{path}")
        if LOAD_CPUS and shutil.which("taskset"):
            command = ["taskset", "-c", ",".join(map(str, sorted(LOAD_CPUS))), *command]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        match = re.search(r"Requests/sec:\s+([\d.]+)", output)
        if not match or "Non-2xx" in output or "Socket errors" in output:
            raise RuntimeError(f"wrk reported errors:\n{output}")
        return float(match[1])
    queue: Any = multiprocessing.Queue()
    worker = multiprocessing.Process(
        target=_load_process, args=(port, path, headers, connections, seconds, queue)
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
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated, of: %(default)s (the last is what the others are compared with)",
    )
    args = parser.parse_args()
    chosen = args.variants.split(",")
    if not set(chosen) <= set(VARIANTS):
        parser.error(f"--variants: choose among {','.join(VARIANTS)}")
    variants = {name: VARIANTS[name] for name in chosen}

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
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "REDIS_TOPOLOGY": args.topology if args.redis_url else "standalone",
            **SETTINGS,
        }
        # One server per variant, all on the server's CPU; only one is loaded at a time.
        ports: dict[str, int] = {}
        servers: list[subprocess.Popen[bytes]] = []
{%- if cookiecutter.__traces %}
        sink_port = free_port()
        sink = multiprocessing.Process(target=_sink, args=(sink_port,), daemon=True)
        sink.start()
        if sink.pid is not None:
            pin(sink.pid, LOAD_CPUS)
        wait_for_port(sink_port)
        sink_url = f"http://127.0.0.1:{sink_port}"
{%- endif %}
        run_id = os.urandom(8).hex()
        runs = [(variant, name) for variant in variants for name in CASES]
        figures: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
        # The server's CPU time per request, in microseconds: what a request costs it.
        costs: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
        try:
            for variant in variants:
                command = [
                    sys.executable, "-m", "uvicorn", "bench_request_path:make_bench_app",
                    "--factory", "--app-dir", str(Path(__file__).parent),
                    "--no-access-log", "--no-proxy-headers", "--log-level", "warning",
                ]  # fmt: skip
                kept = variants[variant]
                variables = {**env, "BENCH_OBSERVABILITY": kept, "BENCH_RUN": run_id}
{%- if cookiecutter.__metrics %}
                if "metrics" in kept:  # as the Dockerfile runs it: multiprocess mode
                    directory = Path(scratch) / f"metrics-{len(servers)}"
                    directory.mkdir()
                    variables["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
{%- endif %}
{%- if cookiecutter.__traces %}
                exported = "exported" in kept
                variables["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink_url if exported else ""
{%- endif %}
                server, ports[variant] = serve(command, variables)
                servers.append(server)
                pin(server.pid, SERVER_CPUS)
            pids = dict(zip(variants, (server.pid for server in servers), strict=True))
            headers = {}
            for variant, port in ports.items():
                headers[variant] = prepare(port)
            for variant, name in runs if args.warmup > 0 else ():
                requests_per_second(
                    ports[variant], CASES[name], headers[variant], args.connections, args.warmup
                )
            for round_number in range(args.rounds):
                shift = round_number % len(CASES)
                names = list(CASES)
                for name in names[shift:] + names[:shift]:
                    order = list(variants)[:: 1 if round_number % 2 == 0 else -1]
                    for variant in order:  # the variants of one case back to back
                        used = cpu_seconds(pids[variant])
                        rate = requests_per_second(
                            ports[variant], CASES[name], headers[variant], args.connections,
                            args.seconds,
                        )  # fmt: skip
                        used = cpu_seconds(pids[variant]) - used
                        figures[variant, name].append(rate)
                        costs[variant, name].append(used / (rate * args.seconds) * 1e6)
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)
            if redis_process is not None:
                redis_process.terminate()
                redis_process.wait(timeout=10)
{%- if cookiecutter.__traces %}
            sink.terminate()
            sink.join(timeout=10)
{%- endif %}

    tool = "wrk" if shutil.which("wrk") else "built-in load generator"
    print(f"uvicorn, 1 worker, {args.connections} connections, {tool}, median of {args.rounds}:")
    for variant in variants:
        if variant:
            print(f" {variant}:")
        for name in CASES:
            values = figures[variant, name]
            gets = figures[variant, "get"]
            ratio = statistics.median(mine / get for mine, get in zip(values, gets, strict=True))
            rounds = ", ".join(f"{figure:.0f}" for figure in values)
            print(
                f"  {name:<13} {statistics.median(values):>9.0f} req/s   {ratio:5.2f} x get"
                f"   (rounds: {rounds})"
            )
    *measured, reference = variants
    for variant in measured:
        print(
            f" {variant} / {reference}: throughput, the same case in the same round (median"
            " ratio); server CPU per request (medians)"
        )
        for name in CASES:
            pairs = zip(figures[variant, name], figures[reference, name], strict=True)
            ratio = statistics.median(mine / other for mine, other in pairs)
            mine, other = (statistics.median(costs[v, name]) for v in (variant, reference))
            print(f"  {name:<13} {ratio:5.3f}   {mine:5.0f} us / {other:5.0f} us")
    if SERVER_CPUS:
        print(f"  server on CPU {sorted(SERVER_CPUS)}, Redis and load on CPUs {sorted(LOAD_CPUS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
