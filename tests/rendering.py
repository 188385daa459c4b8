"""Rendering the template with given answers, and the environment generated projects run in."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
import venv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cookiecutter.main import cookiecutter

from tests.combos import COOKIECUTTER_JSON, TEMPLATE_DIR, all_on
from tests.tools import run

CACHE_DIR = Path(os.environ.get("TEMPLATE_TEST_CACHE", TEMPLATE_DIR / ".cache"))


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


def project_requirements(project: Path) -> list[str]:
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    return sorted([*pyproject["project"]["dependencies"], *pyproject["dependency-groups"]["dev"]])


def clean_environment(venv_path: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a generated project's tools run in: nothing of ours leaks in."""
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TERM", "SYSTEMROOT")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["PATH"] = os.pathsep.join([str(venv_path / "bin"), os.environ.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(venv_path)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


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
        return run(
            str(self.bin / args[0]),
            *args[1:],
            cwd=cwd,
            env=clean_environment(self.path, env),
            timeout=timeout,
        )


def shared_environment_for(reference_dir: Path) -> SharedEnvironment:
    """The shared environment for today's dependencies: built once, then reused (by every
    xdist worker, and by later runs while the dependencies stay the same)."""
    reference = render(all_on(), reference_dir)
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
            pip = (
                str(path / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            )
            for arguments in (("--upgrade", "pip>=25.1"), tuple(requirements)):
                result = run(*pip, *arguments, cwd=CACHE_DIR, timeout=900)
                assert result.returncode == 0, result.stdout + result.stderr
            (path / ".complete").write_text("\n".join(requirements))
    return SharedEnvironment(path)
