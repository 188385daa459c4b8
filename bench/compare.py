"""The generated service's request path measured beside a naive route and the peer libraries.

Renders the template four times (cache alone, sessions alone, the limiter alone, everything
on), installs each into one environment from its uv.lock, installs the peer libraries
(fastapi-cache2, slowapi, fastapi-limiter, starsessions) into environments of their own
from the package index, and serves every app from its own uvicorn process (1 worker) on
one real redis-server this script starts. Then, round after round, it loads each case in
turn with wrk (same connections, same duration, the order rotating every round) and
reports requests per second as a ratio to the naive route (one redis.asyncio GET, returned
as JSON) measured in the same round. It also counts the commands Redis executes per request
(MONITOR, leaving out those a Lua script runs), and writes a Markdown table and an SVG chart.

    make bench                                        # the full run (about 10 minutes)
    uv run --group bench python bench/compare.py --seconds 1 --rounds 1   # a smoke run

Needs wrk (Debian: apt-get install wrk), redis-server and uv. On Linux with 2+ CPUs the app
servers get CPU 0, and Redis and wrk the others, so load and server do not compete.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
APPS = Path(__file__).resolve().parent / "apps"
PEERS = {
    "peers": ["fastapi", "uvicorn", "redis", "slowapi==0.1.10", "fastapi-limiter==0.2.0",
              "starsessions==2.2.1"],
    # fastapi-cache2 0.2.2 imports starlette's templating, which needs jinja2.
    "peers-cache2": ["fastapi", "uvicorn", "redis<5", "fastapi-cache2==0.2.2", "jinja2"],
}  # fmt: skip
RENDERS: dict[str, dict[str, Any]] = {
    "cache": {"use_sessions": False, "rate_limiting": "none"},
    "sessions": {"use_cache": False, "rate_limiting": "none"},
    "limiter": {"use_cache": False, "use_sessions": False},
    "all": {},
}
PEERS_SHOWN = ["slowapi", "fastapi-limiter", "starsessions"]
NAIVE = "naive GET (reference)"
WIDE_CASE = "all on: cache hit + limiter"
HOUSEKEEPING = frozenset({"PING", "CLIENT", "HELLO", "INFO", "SCRIPT", "SELECT", "MONITOR"})
_CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
SERVER_CPUS = set(_CPUS[:1]) if len(_CPUS) > 1 else set()
LOAD_CPUS = set(_CPUS[1:]) if len(_CPUS) > 1 else set()


@dataclass
class Server:
    name: str
    environment: str  # "ours" or a key of PEERS
    target: str  # uvicorn's APP argument
    app_dir: Path
    python_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0


@dataclass
class Case:
    name: str
    server: str
    path: str
    ours: bool
    # Run once before measuring: warms a cache entry or logs in; returns request headers.
    prepare: Callable[[int], dict[str, str]] = lambda port: {}
    rates: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    round_trips_per_request: float = 0.0
    commands_per_request: float = 0.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def pin(pid: int, cpus: set[int]) -> None:
    if hasattr(os, "sched_setaffinity") and cpus:
        os.sched_setaffinity(pid, cpus)


def request(
    port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        sent = {"content-type": "application/json", **(headers or {})}
        connection.request(method, path, body=payload, headers=sent)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def cookie_of(headers: dict[str, str]) -> str:
    return headers["set-cookie"].split(";", 1)[0]


def warm(path: str) -> Callable[[int], dict[str, str]]:
    def prepare(port: int) -> dict[str, str]:
        for _ in range(2):
            status, _, _ = request(port, "GET", path)
            assert status == 200, (path, status)
        return {}

    return prepare


def our_login(port: int) -> dict[str, str]:
    credentials = {"username": "bench", "password": "correct horse battery"}
    request(port, "POST", "/auth/register", credentials)  # 201, or 409 when it exists
    status, headers, _ = request(port, "POST", "/auth/login", credentials)
    assert status == 200, status
    return {"cookie": cookie_of(headers)}


def starsessions_login(port: int) -> dict[str, str]:
    status, headers, _ = request(port, "POST", "/login", {})
    assert status == 200, status
    return {"cookie": cookie_of(headers)}


def run(command: Sequence[str], **options: Any) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **options)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    output: str = result.stdout
    return output


def build_environments(work: Path, uv: str) -> tuple[dict[str, Path], dict[str, Path]]:
    """The four renders and the environments: ours (from the all-on lock) and the peers'."""
    renders = {}
    for name, answers in RENDERS.items():
        context: dict[str, Any] = {"ci": "none", "use_docker": False, **answers}
        renders[name] = Path(cookiecutter(str(TEMPLATE), no_input=True, extra_context=context,
                                          output_dir=str(work / "render" / name)))  # fmt: skip
    environments = {}
    ours = work / "venv-ours"
    exported = run([uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes"],
                   cwd=renders["all"])  # fmt: skip
    (work / "ours.txt").write_text(exported)
    run([uv, "venv", "--quiet", "--clear", str(ours)])
    run([uv, "pip", "sync", "--quiet", "--python", str(ours / "bin" / "python"), str(work / "ours.txt")])
    environments["ours"] = ours
    for name, requirements in PEERS.items():
        path = work / f"venv-{name}"
        run([uv, "venv", "--quiet", "--clear", str(path)])
        run([uv, "pip", "install", "--quiet", "--python", str(path / "bin" / "python"), *requirements])
        environments[name] = path
    return renders, environments


def versions(environment: Path, names: Sequence[str]) -> str:
    script = ("import importlib.metadata as m, sys; "
              "print(', '.join(f'{n} {m.version(n)}' for n in sys.argv[1:]))")  # fmt: skip
    return run([str(environment / "bin" / "python"), "-c", script, *names]).strip()


def servers_and_cases(renders: dict[str, Path], redis_url: str) -> tuple[list[Server], list[Case]]:
    ours_env = {
        "REDIS_URL": redis_url, "REDIS_TOPOLOGY": "standalone", "APP_ENV": "development",
        "LOG_LEVEL": "WARNING", "RATE_LIMIT_DEFAULT": "1000000000/second",
        "SESSION_SECRET": "bench-" + "x" * 40, "PASSWORD_HASH_COST": "10",
        "CACHE_TTL_SECONDS": "3600", "DEMO_COMPUTE_DELAY_MS": "0",
        # Metrics (on by default) served on the app's port, not on a fixed port of their own.
        "METRICS_PORT": "0",
    }  # fmt: skip
    servers = [Server("naive", "ours", "naive:app", APPS, env={"REDIS_URL": redis_url})]
    for name, project in renders.items():
        package = next(path.name for path in (project / "src").iterdir() if path.is_dir())
        servers.append(Server(f"ours-{name}", "ours", f"{package}.main:create_app",
                              project, project / "src", dict(ours_env)))  # fmt: skip
    peer_env = {"REDIS_URL": redis_url}
    servers += [
        Server("fastapi-cache2", "peers-cache2", "fastapi_cache2_app:app", APPS, env=peer_env),
        Server("slowapi", "peers", "slowapi_app:app", APPS, env=peer_env),
        Server("fastapi-limiter", "peers", "fastapi_limiter_app:app", APPS, env=peer_env),
        Server("starsessions", "peers", "starsessions_app:app", APPS, env=peer_env),
    ]
    cases = [
        Case("bare FastAPI route, no Redis", "naive", "/bare", ours=False),
        Case(NAIVE, "naive", "/get", ours=False),
        Case("our cache hit, cache alone", "ours-cache", "/items/x", True, warm("/items/x")),
        Case("fastapi-cache2 hit", "fastapi-cache2", "/items/x", False, warm("/items/x")),
        Case("our session read, sessions alone", "ours-sessions", "/auth/me", True, our_login),
        Case("starsessions read", "starsessions", "/me", False, starsessions_login),
        Case("our limiter alone", "ours-limiter", "/", True),
        Case("slowapi", "slowapi", "/", False),
        Case("fastapi-limiter", "fastapi-limiter", "/", False),
        Case("all on: cache hit + limiter", "ours-all", "/items/x", True, warm("/items/x")),
        Case("all on: session read + limiter", "ours-all", "/auth/me", True, our_login),
    ]
    return servers, cases


def _launch(server: Server, environments: dict[str, Path], scratch: Path) -> subprocess.Popen[bytes]:
    server.port = free_port()
    python = environments[server.environment] / "bin" / "python"
    command = [str(python), "-m", "uvicorn", server.target, "--port", str(server.port),
               "--app-dir", str(server.app_dir), "--no-access-log", "--log-level",
               "warning", "--no-proxy-headers"]  # fmt: skip
    if server.target.endswith(":create_app"):
        command.append("--factory")
    env = {**os.environ, **server.env}
    if server.python_path:
        env["PYTHONPATH"] = str(server.python_path)
    if server.target.endswith(":create_app"):  # our metrics as the Dockerfile runs them
        directory = scratch / f"{server.name}-{server.port}"
        directory.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    process = subprocess.Popen(command, env=env, cwd=server.app_dir)
    pin(process.pid, SERVER_CPUS)
    return process


@contextmanager
def started(servers: list[Server], environments: dict[str, Path]) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes = []
    scratch = tempfile.TemporaryDirectory(prefix="bench-metrics-")
    try:
        for server in servers:
            processes.append(_launch(server, environments, Path(scratch.name)))
        # A free port can be taken by another process before the server binds it: the server
        # then exits at once, while the port answers for that other process. Such a server is
        # started again on another port.
        for _ in range(3):
            for server, process in zip(servers, processes, strict=True):
                try:
                    wait_for_port(server.port)
                except RuntimeError:
                    raise RuntimeError(f"{server.name} did not start (exit code {process.poll()})") from None
            time.sleep(1)
            lost = [index for index, process in enumerate(processes) if process.poll() is not None]
            if not lost:
                break
            for index in lost:
                processes[index] = _launch(servers[index], environments, Path(scratch.name))
        else:
            raise RuntimeError("servers kept exiting at startup (ports taken?)")
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)
        scratch.cleanup()


def wrk(
    port: int, path: str, headers: dict[str, str], connections: int, seconds: float
) -> tuple[float, float]:
    """Requests per second and the p99 latency (ms) of one wrk run; errors are fatal."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{max(round(seconds), 1)}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://127.0.0.1:{port}{path}")
    if LOAD_CPUS and shutil.which("taskset"):
        command = ["taskset", "-c", ",".join(map(str, sorted(LOAD_CPUS))), *command]
    output = run(command)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", output)
    if not rate or not p99 or "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk reported errors on {path}:\n{output}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99[2]]
    return float(rate[1]), float(p99[1]) * scale


def server_reads(redis_port: int) -> int:
    """How many times Redis has read from its clients (INFO stats total_reads_processed)."""
    with socket.create_connection(("127.0.0.1", redis_port)) as connection:
        connection.sendall(b"INFO stats\r\n")
        reply = b""
        while not reply.endswith(b"\r\n") or reply.count(b"\r\n") < 2:
            reply += connection.recv(65536)
    found = re.search(rb"total_reads_processed:(\d+)", reply)
    assert found, reply[:200]
    return int(found[1])


def round_trips_per_request(
    redis_port: int, port: int, case: Case, headers: dict[str, str], count: int = 50
) -> float:
    """Round trips to Redis per request of this case: Redis reads a pipeline in one read,
    so its count of reads tells round trips where MONITOR only sees commands. Nothing else
    talks to this Redis meanwhile; the reads of asking are measured and left out."""
    own = -server_reads(redis_port) + server_reads(redis_port)
    before = server_reads(redis_port)
    for _ in range(count):
        status, _, _ = request(port, "GET", case.path, headers=headers)
        assert status == 200, (case.name, status)
    return (server_reads(redis_port) - before - own) / count


def commands_per_request(
    redis_port: int, port: int, case: Case, headers: dict[str, str], count: int = 50
) -> float:
    """Commands Redis executes per request of this case (MONITOR; script-internal and
    connection housekeeping left out)."""
    monitor = socket.create_connection(("127.0.0.1", redis_port))
    monitor.sendall(b"MONITOR\r\n")
    lines: list[bytes] = []
    buffer = b""
    stop = threading.Event()

    def read() -> None:
        nonlocal buffer
        monitor.settimeout(0.2)
        while not stop.is_set():
            try:
                chunk = monitor.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return
            buffer += chunk
            *complete, buffer = buffer.split(b"\r\n")
            lines.extend(complete)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.2)
    try:
        for _ in range(count):
            status, _, _ = request(port, "GET", case.path, headers=headers)
            assert status == 200, (case.name, status)
        time.sleep(0.3)
    finally:
        stop.set()
        reader.join()
        monitor.close()
    counted = 0
    for line in lines:
        match = re.match(rb'^\+[\d.]+ \[\d+ ([^\]]+)\] "([A-Za-z]+)"', line)
        if match and match[1] != b"lua" and match[2].upper().decode() not in HOUSEKEEPING:
            counted += 1
    return counted / count


def wide_load(port: int, case: Case, headers: dict[str, str], args: argparse.Namespace) -> str:
    """One run with many connections: its errors (socket errors, non-2xx) and p99."""
    seconds = max(round(args.seconds), 1)
    command = ["wrk", "-t2", f"-c{args.wide_connections}", f"-d{seconds}s", "--latency",
               "--timeout", "10s"]  # fmt: skip
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://127.0.0.1:{port}{case.path}")
    output = run(command)
    requests = re.search(r"(\d+) requests in", output)
    p99 = re.search(r"99%\s+([\d.]+(?:us|ms|s))\b", output)
    socket_errors = re.search(r"Socket errors: (.+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = (socket_errors[1] if socket_errors else "none") + (
        f"; {non_2xx[1]} non-2xx" if non_2xx else "; 0 non-2xx"
    )
    return (f"{args.wide_connections} connections for {seconds} s against {case.name!r}: "
            f"{requests[1] if requests else '?'} requests, socket errors: {errors}, "
            f"p99 {p99[1] if p99 else '?'}.")  # fmt: skip


def needed_tools(parser: argparse.ArgumentParser) -> str:
    """Stop with a usage error unless wrk, redis-server and uv are installed; uv's path."""
    for tool in ("wrk", "redis-server", "uv"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (wrk: apt-get install wrk)")
    return shutil.which("uv") or "uv"


def machine() -> str:
    model = ""
    if Path("/proc/cpuinfo").exists():
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        model = found[1].strip() if found else ""
    redis_version = run(["redis-server", "--version"]).split()[2]
    return (f"{os.cpu_count()} CPUs ({model or platform.machine()}), {platform.system()}, "
            f"Python {platform.python_version()}, Redis {redis_version.removeprefix('v=')}")  # fmt: skip


def report(cases: list[Case], args: argparse.Namespace, notes: list[str]) -> tuple[str, dict[str, float]]:
    reference = next(case for case in cases if case.name == NAIVE)
    ratios = {}
    rows = ["| case | req/s | ratio to the naive GET | round trips per request "
            "| Redis commands per request | p99 |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for case in cases:
        ratio = statistics.median(
            mine / naive for mine, naive in zip(case.rates, reference.rates, strict=True)
        )
        ratios[case.name] = ratio
        name = f"**{case.name}**" if case.ours else case.name
        rows.append(f"| {name} | {statistics.median(case.rates):,.0f} | {ratio:.2f} | "
                    f"{case.round_trips_per_request:g} | {case.commands_per_request:g} | "
                    f"{statistics.median(case.p99_ms):.1f} ms |")  # fmt: skip
    heading = (f"uvicorn, 1 worker per app; wrk, {args.connections} connections, {args.rounds} "
               f"round(s) of {args.seconds:g} s per case, interleaved; medians. {machine()}.")  # fmt: skip
    return "\n".join([heading, "", *rows, "", *notes]) + "\n", ratios


def chart(ratios: dict[str, float], ours: set[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    names = list(ratios)[::-1]
    figure, axes = plt.subplots(figsize=(8, 0.4 * len(names) + 1))
    colours = ["#1f77b4" if name in ours else "#9e9e9e" for name in names]
    axes.barh(names, [ratios[name] for name in names], color=colours)
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xlabel("requests per second, as a ratio to the naive GET route (same run)")
    for index, name in enumerate(names):
        axes.text(ratios[name] + 0.02, index, f"{ratios[name]:.2f}", va="center", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, metadata={"Date": None})
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="load per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wide-connections", type=int, default=1024,
                        help=f"connections of one more run against {WIDE_CASE!r}")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    uv = needed_tools(parser)
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        work = Path(scratch)
        renders, environments = build_environments(work, uv)
        redis_port = free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", scratch],
                                 stdout=subprocess.DEVNULL)  # fmt: skip
        pin(redis.pid, LOAD_CPUS)
        try:
            wait_for_port(redis_port)
            servers, cases = servers_and_cases(renders, f"redis://127.0.0.1:{redis_port}/0")
            ports = {server.name: server for server in servers}
            notes: list[str] = []
            with started(servers, environments):
                headers = {case.name: case.prepare(ports[case.server].port) for case in cases}
                for case in cases:  # warm-up, then round trips counted once the load has drained
                    wrk(ports[case.server].port, case.path, headers[case.name], args.connections, 1)
                    time.sleep(1.0)
                    case.round_trips_per_request = round_trips_per_request(
                        redis_port, ports[case.server].port, case, headers[case.name]
                    )
                    case.commands_per_request = commands_per_request(
                        redis_port, ports[case.server].port, case, headers[case.name]
                    )
                for round_number in range(args.rounds):
                    shift = round_number % len(cases)
                    for case in cases[shift:] + cases[:shift]:
                        rate, p99 = wrk(ports[case.server].port, case.path, headers[case.name],
                                        args.connections, args.seconds)  # fmt: skip
                        case.rates.append(rate)
                        case.p99_ms.append(p99)
                wide = next(case for case in cases if case.name == WIDE_CASE)
                notes.append(wide_load(ports[wide.server].port, wide, headers[wide.name], args))
                peers = versions(environments["peers"], PEERS_SHOWN)
                cache2 = versions(environments["peers-cache2"], ["fastapi-cache2"])
                ours = versions(environments["ours"], ["fastapi", "redis", "uvicorn"])
                notes.append(f"Peers: {peers}; {cache2}. Ours and the naive route: {ours}.")
        finally:
            redis.terminate()
            redis.wait(timeout=15)
    table, ratios = report(cases, args, notes)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(table)
    chart(ratios, {case.name for case in cases if case.ours}, args.out / "results.svg")
    print(table)
    print(f"wrote {args.out / 'results.md'} and {args.out / 'results.svg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
