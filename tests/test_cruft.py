"""`cruft create` works from this template and `cruft check` passes on the result; a project
created from the previous release, then edited as its owner would, updates to this one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.combos import COOKIECUTTER_JSON, TEMPLATE_DIR
from tests.locks import SHIPPED_LOCK, unshipped_pins
from tests.releases import PREVIOUS_RELEASE
from tests.rendering import InstalledProject, SharedEnvironment, failures_first
from tests.tools import run, tool

# One worker runs them all, so the module-scoped update below is made once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cruft")]

IGNORED = shutil.ignore_patterns(".git", ".venv", ".tools", ".cache", "build", "__pycache__", "*.pyc")


def _git(*args: str, cwd: Path) -> None:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    result = run("git", *identity, *args, cwd=cwd)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def template_repository(tmp_path: Path) -> Path:
    """The working tree as it is now, committed into a throwaway repository."""
    repository = tmp_path / "template"
    shutil.copytree(
        TEMPLATE_DIR,
        repository,
        ignore=IGNORED,
        symlinks=True,  # the project template's uv.lock links to reference/uv.lock, as in git
    )
    _git("init", "--quiet", "--initial-branch=main", cwd=repository)
    _git("add", "--all", cwd=repository)
    _git("commit", "--quiet", "--message", "template", cwd=repository)
    return repository


def test_cruft_create_then_check_passes(template_repository: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    create = run(
        tool("cruft"), "create", str(template_repository), "--no-input", "--output-dir", str(output),
        "--skip", "uv.lock",
        cwd=tmp_path,
    )  # fmt: skip
    assert create.returncode == 0, create.stdout + create.stderr
    project = output / "redis-service"
    assert json.loads((project / ".cruft.json").read_text())["skip"] == ["uv.lock"]
    check = run(tool("cruft"), "check", cwd=project)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "up to date" in check.stdout


def test_the_project_records_the_template_release(template_repository: Path, tmp_path: Path) -> None:
    project = _create(template_repository, "HEAD", tmp_path / "out")
    recorded = json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]
    assert recorded["_template_version"] == COOKIECUTTER_JSON["_template_version"]
    assert (
        f"Generated from release {COOKIECUTTER_JSON['_template_version']}"
        in (project / "README.md").read_text()
    )


# What an owner does to a project in its first weeks: a route of their own, a default of
# their own, a dependency of their own.
PING_ROUTER = '''"""A route of the project's own."""

from fastapi import APIRouter

router = APIRouter()


@router.get("/ping")
async def ping() -> dict[str, bool]:
    return {"pong": True}
'''
PING_TEST = """from __future__ import annotations

import pytest

from tests.service import Service

pytestmark = pytest.mark.anyio


async def test_ping_answers_pong(memory_service: Service) -> None:
    response = await memory_service.client.get("/ping")
    assert response.json() == {"pong": True}
"""
TEMPLATE_DEFAULT = "redis_max_connections: int = Field(default=50, "
OWN_DEFAULT = "redis_max_connections: int = Field(default=100, "
TEMPLATE_DEFAULT_ROW = "| `REDIS_MAX_CONNECTIONS` | `50` |"
OWN_DEFAULT_ROW = "| `REDIS_MAX_CONNECTIONS` | `100` |"
CONFLICT_MARKERS = ("<<<<<<< ", ">>>>>>> ")


def _create(template_repository: Path, checkout: str, output: Path) -> Path:
    create = run(
        tool("cruft"), "create", str(template_repository), "--no-input", "--checkout", checkout,
        "--output-dir", str(output), "--skip", "uv.lock",
        cwd=template_repository.parent,
    )  # fmt: skip
    assert create.returncode == 0, create.stdout + create.stderr
    return output / "redis-service"


@pytest.fixture(scope="module")
def two_releases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A throwaway template repository: the previous release's commit, then the working tree."""
    tmp_path = tmp_path_factory.mktemp("releases")
    source = run("git", "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}", cwd=TEMPLATE_DIR)
    assert source.returncode == 0, (
        f"the previous release's commit {PREVIOUS_RELEASE} is not in {TEMPLATE_DIR}'s git history"
        " (a shallow clone?): fetch it, e.g. `git fetch --unshallow`"
    )
    repository = tmp_path / "template"
    repository.mkdir()
    archive = run(
        "git", "archive", "--output", str(tmp_path / "previous.tar"), PREVIOUS_RELEASE, cwd=TEMPLATE_DIR
    )
    assert archive.returncode == 0, archive.stderr
    shutil.unpack_archive(tmp_path / "previous.tar", repository)
    _git("init", "--quiet", "--initial-branch=main", cwd=repository)
    _git("add", "--all", cwd=repository)
    _git("commit", "--quiet", "--message", "previous release", cwd=repository)
    previous = _head(repository)
    for entry in repository.iterdir():
        if entry.name != ".git":
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    shutil.copytree(TEMPLATE_DIR, repository, ignore=IGNORED, symlinks=True, dirs_exist_ok=True)
    _git("add", "--all", cwd=repository)
    _git("commit", "--quiet", "--message", "this release", cwd=repository)
    return repository, previous, _head(repository)


def _head(repository: Path) -> str:
    result = run("git", "rev-parse", "HEAD", cwd=repository)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def updated_project(two_releases: tuple[Path, str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Created from the previous release, edited and committed by its owner, then updated
    with `cruft update` to this release (once: the tests below only read it, but for the
    lock test's own `uv lock`)."""
    tmp_path = tmp_path_factory.mktemp("updated")
    repository, previous, current = two_releases
    project = _create(repository, previous, tmp_path / "out")
    package = project / "src" / "redis_service"
    # The lock a project of the previous release had: that release's tested versions.
    shutil.copyfile(SHIPPED_LOCK, project / "uv.lock")
    assert InstalledProject(project).uv("lock").returncode == 0
    (package / "api" / "ping.py").write_text(PING_ROUTER)
    (project / "tests" / "unit" / "test_ping.py").write_text(PING_TEST)
    main = package / "main.py"
    source = main.read_text()
    for anchor, addition in [
        ("from . import __version__, health\n", "from .api import ping\n"),
        ("    app.include_router(health.router)\n", "    app.include_router(ping.router)\n"),
    ]:
        assert anchor in source
        source = source.replace(anchor, anchor + addition, 1)
    main.write_text(source)
    settings = package / "settings.py"
    assert TEMPLATE_DEFAULT in settings.read_text()
    settings.write_text(settings.read_text().replace(TEMPLATE_DEFAULT, OWN_DEFAULT))
    readme = project / "README.md"  # the project's own test holds its README to its defaults
    assert TEMPLATE_DEFAULT_ROW in readme.read_text()
    readme.write_text(readme.read_text().replace(TEMPLATE_DEFAULT_ROW, OWN_DEFAULT_ROW))
    added = InstalledProject(project).uv("add", "--no-sync", "anyio>=4")
    assert added.returncode == 0, added.stderr
    _git("init", "--quiet", "--initial-branch=main", cwd=project)
    _git("add", "--all", cwd=project)
    _git("commit", "--quiet", "--message", "our service", cwd=project)
    update = run(
        tool("cruft"), "update", "--checkout", current, "--skip-apply-ask", "--allow-untracked-files",
        cwd=project, timeout=600,
    )  # fmt: skip
    assert update.returncode == 0, update.stdout + update.stderr
    return project


def test_cruft_update_from_the_previous_release_applies_without_conflicts(updated_project: Path) -> None:
    rejected = sorted(str(path.relative_to(updated_project)) for path in updated_project.rglob("*.rej"))
    assert rejected == []
    conflicted = [
        str(path.relative_to(updated_project))
        for path in updated_project.rglob("*")
        if path.is_file() and ".git" not in path.parts and ".venv" not in path.parts
        and any(marker in path.read_text(errors="replace") for marker in CONFLICT_MARKERS)
    ]  # fmt: skip
    assert conflicted == []


def test_cruft_update_keeps_the_owners_edits_and_brings_the_release(updated_project: Path) -> None:
    package = updated_project / "src" / "redis_service"
    assert "app.include_router(ping.router)" in (package / "main.py").read_text()
    assert OWN_DEFAULT in (package / "settings.py").read_text()
    readme = (updated_project / "README.md").read_text()
    assert OWN_DEFAULT_ROW in readme
    assert "Generated from release" in readme  # this release's footer, merged beside the edit
    assert '"anyio>=4"' in (updated_project / "pyproject.toml").read_text()
    assert "unused-ignore" in (package / "redis_client.py").read_text()  # this release's fix
    cruft = json.loads((updated_project / ".cruft.json").read_text())
    assert cruft["context"]["cookiecutter"]["_template_version"] == COOKIECUTTER_JSON["_template_version"]


def test_after_cruft_update_the_lock_stays_consistent_and_tested(updated_project: Path) -> None:
    project = InstalledProject(updated_project)
    assert project.uv("lock").returncode == 0
    check = project.uv("lock", "--check")
    assert check.returncode == 0, check.stderr
    assert unshipped_pins(updated_project / "uv.lock") == set()


def test_after_cruft_update_the_projects_suite_passes(
    updated_project: Path, shared_environment: SharedEnvironment
) -> None:
    result = shared_environment.run(
        "python", "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "-m", "not faults",
        "--ignore=tests/integration/test_realtime_browser.py",
        "--ignore=tests/integration/test_realtime_processes.py",
        "--ignore=tests/integration/test_metrics_processes.py",
        "--ignore=tests/integration/test_traces_processes.py",
        "--ignore=tests/integration/test_bench.py",
        cwd=updated_project, env={"REQUIRE_REDIS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, failures_first(result)
    assert "PASSED tests/unit/test_ping.py::test_ping_answers_pong" in result.stdout
