"""A pairwise-covering set of generated projects, installed from their own uv.lock and run:
mypy --strict and their own test-suites, integration tests included, against real
redis-server processes."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from tests.combos import all_off, all_on, combination_id, defaults, generated_combinations, params
from tests.rendering import CACHE_DIR, InstalledProject, SharedEnvironment, render

pytestmark = pytest.mark.slow

COMBINATIONS = generated_combinations()
PARAMS = params(COMBINATIONS, group="generated-")


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
def test_the_lock_is_rendered_and_matches_pyproject(
    combination: dict[str, Any], project: InstalledProject
) -> None:
    assert (project.path / "uv.lock").is_file()
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
    # The fault tests (45 s) start a standalone server of their own whatever the topology:
    # the standalone renders run them; the Sentinel and Cluster ones test failover instead.
    faults = [] if combination["redis_topology"] == "standalone" else ["-m", "not faults"]
    result = shared_environment.run(
        "python", "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *faults,
        cwd=project.path,
        env={"REQUIRE_REDIS": "1", "REQUIRE_BROWSER": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    assert " passed" in result.stdout
