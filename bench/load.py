"""Load held: the all-on service under 1,024 connections, and its memory over 100,000 requests.

Renders the service with every feature on, installs it from its uv.lock, and serves it from
one uvicorn worker on a redis-server this script starts. wrk then sends a mix of the
everyday requests (a cache hit, a logged-in session read, a rate-limited route) in turn:

1. with 64 connections until the worker has answered 10,000 requests; its RSS then;
2. with 1,024 connections for 30 s, counting errors (socket errors, non-2xx answers) and
   the p99 latency;
3. with 64 connections until 100,000 requests in all; its RSS then.

A worker that leaks grows between the two RSS readings; one that does not stays within a
few MB. Writes `bench/results/load.md`.

    make bench-load                                     # the full run (about 2 minutes)
    uv run --group bench python bench/load.py --connections-seconds 2 --total 20000   # smoke

Needs wrk, redis-server and uv, like compare.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from compare import (
    LOAD_CPUS,
    TEMPLATE,
    Server,
    free_port,
    machine,
    needed_tools,
    our_login,
    pin,
    request,
    run,
    started,
    wait_for_port,
)
from cookiecutter.main import cookiecutter

# Answers other than the defaults, as JSON (e.g. LOAD_EXTRA='{"observability": "none"}').
EXTRA = json.loads(os.environ.get("LOAD_EXTRA", "{}"))

PATHS = ("/items/load", "/auth/me", "/")
MIX = textwrap.dedent(
    """
    -- The everyday requests in turn: a cache hit, a session read, a limited route.
    local paths = {%s}
    local next = 0
    request = function()
      next = next %% #paths + 1
      return wrk.format("GET", paths[next])
    end
    """
) % ", ".join(f'"{path}"' for path in PATHS)


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert found, status
    return int(found[1]) / 1024


def wrk(port: int, script: Path, cookie: str, connections: int, seconds: float) -> dict[str, Any]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{max(round(seconds), 1)}s", "--latency",
               "--timeout", "10s", "-s", str(script), "-H", f"cookie: {cookie}",
               f"http://127.0.0.1:{port}"]  # fmt: skip
    if LOAD_CPUS and shutil.which("taskset"):
        command = ["taskset", "-c", ",".join(map(str, sorted(LOAD_CPUS))), *command]
    output = run(command)
    requests = re.search(r"(\d+) requests in", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"99%\s+([\d.]+(?:us|ms|s))\b", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if not (requests and rate and p99):
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return {
        "requests": int(requests[1]),
        "rate": float(rate[1]),
        "p99": p99[1],
        "socket_errors": sum(map(int, socket_errors.groups())) if socket_errors else 0,
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
    }


def until(total: int, done: int, port: int, script: Path, cookie: str, rate_guess: float) -> int:
    """Load with 64 connections until `total` requests are answered, in runs of at most 5 s
    (1 s near the end, so the count overshoots by about a second's worth); the new count."""
    while done < total:
        seconds = min(max((total - done) / max(rate_guess, 1.0), 1.0), 5.0)
        figures = wrk(port, script, cookie, 64, seconds)
        if figures["socket_errors"] or figures["non_2xx"]:
            raise RuntimeError(f"errors under 64 connections: {figures}")
        done += figures["requests"]
        rate_guess = figures["rate"]
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1024)
    parser.add_argument("--connections-seconds", type=float, default=30.0)
    parser.add_argument("--first", type=int, default=10_000, help="requests before the first RSS")
    parser.add_argument("--total", type=int, default=100_000, help="requests before the second RSS")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    uv = needed_tools(parser)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as scratch:
        work = Path(scratch)
        project = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(work / "render"),
                                    extra_context={"ci": "none", "use_docker": False, **EXTRA}))  # fmt: skip
        exported = run([uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes"],
                       cwd=project)  # fmt: skip
        (work / "requirements.txt").write_text(exported)
        venv = work / "venv"
        run([uv, "venv", "--quiet", "--clear", str(venv)])
        run([uv, "pip", "sync", "--quiet", "--python", str(venv / "bin" / "python"),
             str(work / "requirements.txt")])  # fmt: skip
        script = work / "mix.lua"
        script.write_text(MIX)
        redis_port = free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", scratch],
                                 stdout=subprocess.DEVNULL)  # fmt: skip
        pin(redis.pid, LOAD_CPUS)
        package = next(path.name for path in (project / "src").iterdir() if path.is_dir())
        server = Server("ours-all", "ours", f"{package}.main:create_app", project, project / "src", {
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "REDIS_TOPOLOGY": "standalone",
            "APP_ENV": "development", "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_DEFAULT": "1000000000/second", "SESSION_SECRET": "bench-" + "x" * 40,
            "PASSWORD_HASH_COST": "10", "CACHE_TTL_SECONDS": "3600", "DEMO_COMPUTE_DELAY_MS": "0",
        })  # fmt: skip
        try:
            wait_for_port(redis_port)
            with started([server], {"ours": venv}) as processes:
                pid = processes[0].pid
                cookie = our_login(server.port)["cookie"]
                for _ in range(2):
                    request(server.port, "GET", PATHS[0])  # the cache entry
                done = first = until(args.first, 0, server.port, script, cookie, 5000.0)
                rss_first = rss_mb(pid)
                wide = wrk(server.port, script, cookie, args.connections, args.connections_seconds)
                done += wide["requests"]
                done = until(args.total, done, server.port, script, cookie, wide["rate"])
                rss_last = rss_mb(pid)
        finally:
            redis.terminate()
            redis.wait(timeout=15)
    table = "\n".join([
        f"One uvicorn worker, every feature on; wrk sends a cache hit, a session read and a "
        f"limited route in turn. {machine()}.",
        "",
        "| measure | figure |",
        "|---|---:|",
        f"| {args.connections} connections for {args.connections_seconds:g} s: requests "
        f"| {wide['requests']:,} |",
        f"| ... socket errors | {wide['socket_errors']} |",
        f"| ... non-2xx answers | {wide['non_2xx']} |",
        f"| ... p99 latency | {wide['p99']} |",
        f"| RSS after {first:,} requests | {rss_first:.1f} MB |",
        f"| RSS after {done:,} requests | {rss_last:.1f} MB |",
        f"| growth | {rss_last - rss_first:+.1f} MB |",
    ]) + "\n"  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.md").write_text(table)
    print(table)
    print(f"wrote {args.out / 'load.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
