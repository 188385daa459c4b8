"""Rendering helpers and the shared environment the generated projects are tested in."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
import venv
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cookiecutter.main import cookiecutter

from tests.combos import COOKIECUTTER_JSON, TEMPLATE_DIR, all_on, combination_id

CACHE_DIR = Path(os.environ.get("TEMPLATE_TEST_CACHE", TEMPLATE_DIR / ".cache"))


def load_hook(name: str) -> ModuleType:
    """A hook script as a module: its Jinja sits in a string, so it imports unrendered."""
    spec = importlib.util.spec_from_file_location(name, TEMPLATE_DIR / "hooks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render(context: Mapping[str, Any], output_dir: Path) -> Path:
    """Render the template with these answers and return the project directory.

    Cookiecutter silently ignores unknown extra_context keys, so a typo here would test
    the defaults while looking like it tested something else: refuse unknown keys.
    """
    unknown = set(context) - set(COOKIECUTTER_JSON)
    if unknown:
        raise KeyError(f"not variables of cookiecutter.json: {sorted(unknown)}")
    output_dir.mkdir(parents=True, exist_ok=True)
    project = cookiecutter(
        str(TEMPLATE_DIR),
        no_input=True,
        extra_context=dict(context),
        output_dir=str(output_dir),
        overwrite_if_exists=False,
    )
    return Path(project)


class Renders:
    """Renders cached per test process, so several checks of one combination render once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._done: dict[str, Path] = {}

    def get(self, combination: Mapping[str, Any]) -> Path:
        key = json.dumps(dict(combination), sort_keys=True)
        if key not in self._done:
            digest = hashlib.sha256(key.encode()).hexdigest()[:12]
            self._done[key] = render(combination, self.root / digest)
        return self._done[key]


@pytest.fixture(scope="session")
def renders(tmp_path_factory: pytest.TempPathFactory) -> Renders:
    return Renders(tmp_path_factory.mktemp("renders"))


def project_requirements(project: Path) -> list[str]:
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    return sorted([*pyproject["project"]["dependencies"], *pyproject["dependency-groups"]["dev"]])


class SharedEnvironment:
    """One virtual environment with every dependency any generated project declares.

    Projects are not installed into it: their tests run with `src` on the path
    (pytest's `pythonpath`, mypy's `mypy_path`), so one environment serves all.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bin = path / "bin"

    def run(
        self, *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            cwd=cwd,
            env=clean_environment(self.path, env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def clean_environment(venv_path: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a generated project's tools run in: nothing of ours leaks in."""
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TERM", "SYSTEMROOT")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["PATH"] = os.pathsep.join([str(venv_path / "bin"), os.environ.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(venv_path)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


@pytest.fixture(scope="session")
def shared_environment(tmp_path_factory: pytest.TempPathFactory) -> SharedEnvironment:
    reference = render(all_on(), tmp_path_factory.mktemp("reference"))
    requirements = project_requirements(reference)
    digest = hashlib.sha256(json.dumps([sys.version, requirements]).encode()).hexdigest()[:16]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"generated-venv-{digest}"
    # xdist workers share one environment: the first builds it, the others wait.
    with open(CACHE_DIR / "generated-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / ".complete").exists():
            shutil.rmtree(path, ignore_errors=True)
            venv.create(path, with_pip=True)
            pip = [
                str(path / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ]
            subprocess.run([*pip, "--upgrade", "pip>=25.1"], check=True)
            subprocess.run([*pip, *requirements], check=True)
            (path / ".complete").write_text("\n".join(requirements))
    return SharedEnvironment(path)


def ids(combinations: list[dict[str, Any]]) -> list[str]:
    return [combination_id(c) for c in combinations]
