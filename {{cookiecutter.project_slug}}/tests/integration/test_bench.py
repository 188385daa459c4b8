"""The request-path benchmark runs end to end and prints its figures (it asserts no speed:
timings belong in the benchmark's output, not in a test that could flake)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.main import enabled_features

from tests.redis_servers import REDIS_SERVER

PROJECT = Path(__file__).resolve().parents[2]
BENCH = PROJECT / "bench" / "bench_request_path.py"
CASES = {"cache": "cache hit", "sessions": "session read", "rate limiting": "limited"}


@pytest.mark.skipif(REDIS_SERVER is None, reason="the benchmark starts its own redis-server")
def test_the_benchmark_prints_each_features_rate_and_its_ratio_to_a_plain_get() -> None:
    # The source tree first, whether or not the project is installed.
    python_path = os.pathsep.join([str(PROJECT / "src"), os.environ.get("PYTHONPATH", "")])
    command = [sys.executable, str(BENCH), "--seconds", "1", "--rounds", "1",
               "--connections", "8", "--warmup", "0"]  # fmt: skip
    result = subprocess.run(
        command,
        env={**os.environ, "PYTHONPATH": python_path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Every feature with Redis work on the request path has its everyday request measured.
    measured = [CASES[feature.name] for feature in enabled_features() if feature.before]
    expected = ["bare", "get", *measured]
    for name in expected:
        line = rf"^  {name} +\d+ req/s +\d+\.\d\d x get"
        assert re.search(line, result.stdout, re.MULTILINE), result.stdout
