"""`cruft create` works from this template and `cruft check` passes on the result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.combos import TEMPLATE_DIR
from tests.tools import run, tool

pytestmark = pytest.mark.slow


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
        ignore=shutil.ignore_patterns(".git", ".venv", ".cache", "__pycache__", "*.pyc"),
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
