"""The comparison benchmark keeps working: a smoke run of every case for about a second. It
asserts no speed (figures belong in the benchmark's output); the README's come from a full
run of `make bench`."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.combos import TEMPLATE_DIR
from tests.tools import run, tool

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("wrk") is None or shutil.which("redis-server") is None,
        reason="the benchmark needs wrk and redis-server (.ci/run installs both)",
    ),
]

CASES = (
    "bare FastAPI route, no Redis",
    "naive GET (reference)",
    "our cache hit, cache alone",
    "fastapi-cache2 hit",
    "our session read, sessions alone",
    "starsessions read",
    "our limiter alone",
    "slowapi",
    "fastapi-limiter",
    "all on: cache hit + limiter",
    "all on: session read + limiter",
)


def run_bench(script: str, *arguments: str) -> None:
    # Online: the peers are installed from the package index (through the shared uv cache).
    online = {name: value for name, value in os.environ.items() if name != "UV_OFFLINE"}
    command = [tool("uv"), "run", "--locked", "--group", "bench", "python", script, *arguments]
    result = run(*command, cwd=TEMPLATE_DIR, env=online, timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]


def test_a_smoke_run_measures_every_case_and_writes_the_table_and_the_chart(tmp_path: Path) -> None:
    run_bench(
        "bench/compare.py", "--seconds", "1", "--rounds", "1", "--connections", "16",
        "--wide-connections", "64", "--out", str(tmp_path),
    )  # fmt: skip
    table = (tmp_path / "results.md").read_text()
    for case in CASES:
        row = re.search(rf"^\| (\*\*)?{re.escape(case)}(\*\*)? \| ([\d,]+) \| (\d+\.\d\d) \|", table, re.M)
        assert row is not None, case
        assert int(row[3].replace(",", "")) > 0
    for case in ("all on: cache hit + limiter", "all on: session read + limiter"):
        cells = rf"^\| \*\*{re.escape(case)}\*\* \|[^|]+\|[^|]+\| ([\d.]+) \| ([\d.]+) \|"
        row = re.search(cells, table, re.M)
        assert row is not None, case
        # One round trip and two commands per request; one extra in the 50 measured is tolerated.
        assert 1.0 <= float(row[1]) < 1.1
        assert 2.0 <= float(row[2]) < 2.1
    assert re.search(r"^64 connections for 1 s .*socket errors: none; 0 non-2xx", table, re.M)
    assert (tmp_path / "results.svg").read_text().lstrip().startswith("<?xml")


def test_a_smoke_run_of_the_load_benchmark_reads_the_workers_memory_twice(tmp_path: Path) -> None:
    run_bench(
        "bench/load.py", "--connections", "64", "--connections-seconds", "1", "--first", "300",
        "--total", "1200", "--out", str(tmp_path),
    )  # fmt: skip
    table = (tmp_path / "load.md").read_text()
    assert re.search(r"^\| \.\.\. socket errors \| 0 \|$", table, re.M), table
    assert re.search(r"^\| \.\.\. non-2xx answers \| 0 \|$", table, re.M), table
    first, last = re.findall(r"^\| RSS after ([\d,]+) requests \| ([\d.]+) MB \|$", table, re.M)
    assert 300 <= int(first[0].replace(",", "")) < int(last[0].replace(",", ""))
    assert int(last[0].replace(",", "")) >= 1200
