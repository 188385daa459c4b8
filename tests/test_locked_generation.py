"""Every project is generated from the versions the template's CI tested: the shipped lock
(reference/uv.lock, the everything-on render's), pruned to the answers; and the code stays
clean whether or not a library has gained type hints since."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.combos import TEMPLATE_DIR, all_on, defaults
from tests.locks import REFERENCE_DIR, SHIPPED_LOCK, pins, unshipped_pins
from tests.rendering import InstalledProject, Renders, clean_environment, render
from tests.tools import run, tool

PROJECT_TEMPLATE = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"


def test_the_project_template_ships_the_reference_lock() -> None:
    assert (PROJECT_TEMPLATE / "uv.lock").resolve() == SHIPPED_LOCK.resolve()


def test_the_reference_pyproject_is_what_the_template_renders_with_everything_on(
    renders: Renders,
) -> None:
    rendered = (renders.get(all_on()) / "pyproject.toml").read_text()
    assert rendered == (REFERENCE_DIR / "pyproject.toml").read_text(), (
        "the template's pyproject.toml changed: render everything on, copy its pyproject.toml"
        " to reference/ and run `uv lock` there (it keeps every tested version it can)"
    )


def test_the_everything_on_render_gets_the_shipped_lock_as_it_is(renders: Renders) -> None:
    assert (renders.get(all_on()) / "uv.lock").read_bytes() == SHIPPED_LOCK.read_bytes()


def test_the_shipped_lock_agrees_with_the_reference_pyproject() -> None:
    """A dependency added to the template without re-locking fails here."""
    result = run(tool("uv"), "lock", "--check", "--offline", cwd=REFERENCE_DIR, env=clean_environment())
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_shipped_lock_records_no_upload_date_filter() -> None:
    """`exclude-newer` in a lock would hold back the projects' own updates (Dependabot's
    security updates included) long after generation."""
    assert not re.search(r"(?m)^exclude-newer", SHIPPED_LOCK.read_text())


def _path_without_uv() -> str:
    entries = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(entry for entry in entries if entry and not shutil.which("uv", path=entry))


@pytest.fixture
def generated_without_uv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> tuple[Path, str]:
    """A project with fewer options than the reference, generated where uv is not on PATH."""
    monkeypatch.setenv("PATH", _path_without_uv())
    answers = {**defaults(), "project_name": "No Uv Here", "use_realtime": False, "observability": "none"}
    project = render(answers, tmp_path)
    return project, capfd.readouterr().err


def test_without_uv_the_project_keeps_the_shipped_lock(generated_without_uv: tuple[Path, str]) -> None:
    project, _ = generated_without_uv
    assert (project / "uv.lock").read_bytes() == SHIPPED_LOCK.read_bytes()


def test_without_uv_the_lock_is_older_than_pyproject_so_make_install_prunes_it(
    generated_without_uv: tuple[Path, str],
) -> None:
    project, warning = generated_without_uv
    assert (project / "uv.lock").stat().st_mtime < (project / "pyproject.toml").stat().st_mtime
    assert "uv is not installed" in warning
    assert "`make install` prunes it" in warning


@pytest.mark.slow
def test_make_install_without_uv_at_generation_locks_the_shipped_versions(
    generated_without_uv: tuple[Path, str],
) -> None:
    project, _ = generated_without_uv
    result = run("make", "install", f"UV={tool('uv')}", cwd=project, env=clean_environment(), timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert unshipped_pins(project / "uv.lock") == set()
    locked = {name for name, _ in pins(project / "uv.lock")}
    assert not {"prometheus-client", "opentelemetry-sdk"} & locked  # observability=none: pruned
    check = InstalledProject(project).uv("lock", "--check")
    assert check.returncode == 0, check.stdout + check.stderr


# An ignore whose need rests on a library's type hints: the day the library gains them, the
# ignore becomes unused, which `mypy --strict` reports as an error. `unused-ignore` beside it
# keeps the code clean both before and after.
UPSTREAM_DEPENDENT_CODES = frozenset({"no-untyped-call", "misc"})
IGNORE = re.compile(r"type: ignore\[([^\]]+)\]")


def test_ignores_that_rest_on_upstream_hints_also_allow_being_unused() -> None:
    found = []
    for path in sorted(PROJECT_TEMPLATE.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in IGNORE.finditer(line):
                codes = {code.strip() for code in match[1].split(",")}
                if codes & UPSTREAM_DEPENDENT_CODES and "unused-ignore" not in codes:
                    found.append(f"{path.relative_to(PROJECT_TEMPLATE)}:{number}")
    assert found == []
