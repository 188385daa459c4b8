"""A pairwise-covering set of generated projects, installed from their own uv.lock and run:
mypy --strict and their own test-suites, integration tests included, against real
redis-server processes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import pytest

from tests.combos import all_off, all_on, combination_id, defaults, generated_combinations, params
from tests.locks import unshipped_pins
from tests.rendering import CACHE_DIR, InstalledProject, SharedEnvironment, failures_first, render

pytestmark = pytest.mark.slow

COMBINATIONS = generated_combinations()
PARAMS = params(COMBINATIONS, group="generated-")


def _first_of_each(key: Callable[[dict[str, Any]], object | None]) -> set[str]:
    """The ids of the first combination of each value of `key` (None: never)."""
    chosen: dict[object, str] = {}
    for combination in COMBINATIONS:
        value = key(combination)
        if value is not None:
            chosen.setdefault(value, combination_id(combination))
    return set(chosen.values())


# The fault tests (about 40 s) start a standalone server of their own, whatever the topology
# (the Sentinel and Cluster renders test failover instead). What they exercise depends only
# on which stateful features there are: they run in the first standalone render of each set.
FAULT_RUNS = _first_of_each(
    lambda c: (
        (c["use_cache"], c["use_sessions"], c["rate_limiting"] != "none")
        if c["redis_topology"] == "standalone"
        else None
    )
)
# The demo page differs only by whether there is a login form: one browser run for each.
BROWSER_RUNS = _first_of_each(lambda c: c["use_sessions"] if c["use_realtime"] else None)
# Two server processes, 200 clients and a publisher of its own, and the real-time benchmark's
# smoke run (about 50 s): what they exercise depends on the topology and on whether there is
# a login. One run of each.
PROCESS_RUNS = _first_of_each(
    lambda c: (c["redis_topology"], c["use_sessions"]) if c["use_realtime"] else None
)


# Two uvicorn workers adding up their metrics (about 5 s): one run per topology.
METRICS_PROCESS_RUNS = _first_of_each(
    lambda c: c["redis_topology"] if c["observability"] in ("prometheus", "both") else None
)
# The request-path benchmark's smoke run (up to 30 s: a server per observability variant):
# which variants it serves depends on the observability choice, one run of each.
BENCH_RUNS = _first_of_each(
    lambda c: (
        c["observability"] if c["use_cache"] or c["use_sessions"] or c["rate_limiting"] != "none" else None
    )
)
# Four server processes sending spans to a collector, or not (about 15 s): one per topology.
TRACE_PROCESS_RUNS = _first_of_each(
    lambda c: c["redis_topology"] if c["observability"] in ("otel", "both") else None
)


def test_the_fault_browser_and_process_tests_run_in_the_all_on_render() -> None:
    assert combination_id(all_on()) in FAULT_RUNS & BROWSER_RUNS & PROCESS_RUNS
    assert combination_id(all_on()) in METRICS_PROCESS_RUNS & TRACE_PROCESS_RUNS & BENCH_RUNS
    assert len(BROWSER_RUNS) == 2


def test_the_metrics_and_trace_process_tests_run_on_every_topology() -> None:
    assert len(METRICS_PROCESS_RUNS) == 3
    assert len(TRACE_PROCESS_RUNS) == 3


def test_the_benchmark_smoke_run_serves_every_observability_variant() -> None:
    assert len(BENCH_RUNS) == 4


def test_the_process_tests_run_on_every_topology() -> None:
    topologies = {
        combination["redis_topology"]
        for combination in COMBINATIONS
        if combination_id(combination) in PROCESS_RUNS
    }
    assert topologies == {"standalone", "sentinel", "cluster"}


def test_the_generated_set_includes_the_landmarks() -> None:
    for landmark in (defaults(), all_off(), all_on()):
        assert landmark in COMBINATIONS
    for topology in ("sentinel", "cluster"):
        assert {**all_on(), "redis_topology": topology} in COMBINATIONS


@pytest.fixture(scope="module")
def installed() -> dict[str, InstalledProject]:
    """Projects rendered once per module run (per xdist worker), by combination id."""
    return {}


@pytest.fixture
def project(
    combination: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    installed: dict[str, InstalledProject],
) -> InstalledProject:
    key = combination_id(combination)
    if key not in installed:
        path = render(combination, tmp_path_factory.mktemp("generated"))
        installed[key] = InstalledProject(path)
    return installed[key]


@pytest.mark.parametrize("combination", PARAMS)
def test_the_lock_holds_the_shipped_versions_and_matches_pyproject(
    combination: dict[str, Any], project: InstalledProject
) -> None:
    assert unshipped_pins(project.path / "uv.lock") == set()
    result = project.uv("lock", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("combination", PARAMS)
def test_generated_dependencies_are_in_the_shared_environment(
    combination: dict[str, Any], project: InstalledProject, shared_environment: SharedEnvironment
) -> None:
    exported = project.uv("export", "--frozen", "--all-groups", "--no-emit-project", "--no-hashes")
    pins = {line for line in exported.stdout.splitlines() if "==" in line}
    installed = set((shared_environment.path / ".complete").read_text().splitlines())
    assert pins
    assert pins <= installed


@pytest.mark.parametrize("combination", PARAMS)
def test_uv_sync_locked_installs_the_project(combination: dict[str, Any], project: InstalledProject) -> None:
    result = project.uv("sync", "--locked")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project.path / ".venv" / "bin" / "pytest").exists()


def _mypy_cache(worker: str) -> str:
    # Per worker: mypy's cache is not safe to share between concurrent runs.
    return str(CACHE_DIR / f"mypy-{worker}")


@pytest.mark.parametrize("combination", PARAMS)
def test_generated_project_type_checks_strictly(
    combination: dict[str, Any],
    project: InstalledProject,
    shared_environment: SharedEnvironment,
    worker_id: str,
) -> None:
    result = shared_environment.run("mypy", "--cache-dir", _mypy_cache(worker_id), cwd=project.path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("combination", PARAMS)
def test_generated_project_test_suite_passes(
    combination: dict[str, Any], project: InstalledProject, shared_environment: SharedEnvironment
) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: the generated integration tests need it")
    key = combination_id(combination)
    options = [] if key in FAULT_RUNS else ["-m", "not faults"]
    # A skip for want of redis-server or promtool would fail the run.
    environment = {"REQUIRE_REDIS": "1", "REQUIRE_PROMTOOL": "1"}
    if key in BROWSER_RUNS:
        environment["REQUIRE_BROWSER"] = "1"  # the same for the browser
    else:
        options.append("--ignore=tests/integration/test_realtime_browser.py")
    if key not in PROCESS_RUNS:
        options.append("--ignore=tests/integration/test_realtime_processes.py")
    if key not in METRICS_PROCESS_RUNS:
        options.append("--ignore=tests/integration/test_metrics_processes.py")
    if key not in TRACE_PROCESS_RUNS:
        options.append("--ignore=tests/integration/test_traces_processes.py")
    if key not in BENCH_RUNS:
        options.append("--ignore=tests/integration/test_bench.py")
    result = shared_environment.run(
        "python", "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs", *options,
        cwd=project.path,
        env=environment,
    )  # fmt: skip
    assert result.returncode == 0, failures_first(result)
    assert " passed" in result.stdout
