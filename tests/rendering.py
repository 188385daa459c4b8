"""Rendering the template with given answers, and the environment generated projects run in."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cookiecutter import utils as cookiecutter_utils
from cookiecutter.environment import StrictEnvironment
from cookiecutter.main import cookiecutter
from jinja2 import FileSystemBytecodeCache

from tests.combos import COOKIECUTTER_JSON, TEMPLATE_DIR, all_on
from tests.locks import REFERENCE_DIR, SHIPPED_LOCK, unshipped_pins
from tests.tools import BIN, run, tool

KEPT_VARIABLES = frozenset(
    {
        "HOME", "LANG", "LC_ALL", "TMPDIR", "TERM", "SYSTEMROOT",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "UV_CACHE_DIR", "UV_NATIVE_TLS", "UV_INDEX_URL",
        "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL",
    }
)  # fmt: skip
CACHE_DIR = Path(os.environ.get("TEMPLATE_TEST_CACHE", TEMPLATE_DIR / ".cache"))


class _CompiledOnceEnvironment(StrictEnvironment):  # type: ignore[misc]
    """Cookiecutter's own Jinja environment, plus Jinja's bytecode cache: a template file is
    compiled once, not once per render (the cache keys on the file's source, so an edited
    template is compiled anew). The rendered output is the same."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        (CACHE_DIR / "jinja").mkdir(parents=True, exist_ok=True)
        self.bytecode_cache = FileSystemBytecodeCache(str(CACHE_DIR / "jinja"))


# Where Cookiecutter makes its environment for rendering files.
cookiecutter_utils.StrictEnvironment = _CompiledOnceEnvironment


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


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a generated project's tools run in: nothing of ours leaks in, but
    uv's shared cache carries over (online: installing downloads what it lacks), and so
    does how this machine reaches the package index (certificates, proxies)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name in KEPT_VARIABLES or name.upper().endswith("_PROXY")
    }
    env["PATH"] = os.environ.get("PATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


class InstalledProject:
    """A generated project, locked and installed by uv into its own .venv."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def uv(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run(tool("uv"), *args, cwd=self.path, env=clean_environment(), timeout=timeout)


def failures_first(result: subprocess.CompletedProcess[str]) -> str:
    """A generated suite's failed and errored test ids (pytest's -rfE summary) ahead of its
    output's tail, so that a long output cannot cut off which tests failed."""
    return "\n".join([*failed_tests(result.stdout), "", result.stdout[-20000:], result.stderr[-5000:]])


def failed_tests(output: str) -> list[str]:
    """pytest's summary lines of failed and errored tests (with -rfE), in order."""
    return [line for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]


class SharedEnvironment:
    """One virtual environment with the all-on project's locked dependencies, which every
    combination's are a subset of, in their locked versions.

    Projects are not installed into it: their tests run with `src` on the path (pytest's
    `pythonpath`, mypy's `mypy_path`), so one environment serves all, and mypy's cache of
    the third-party packages stays valid from one project to the next.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(
        self, *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        environment = clean_environment(env)
        environment["PATH"] = os.pathsep.join([str(self.path / "bin"), environment["PATH"]])
        environment["VIRTUAL_ENV"] = str(self.path)
        return run(str(self.path / "bin" / args[0]), *args[1:], cwd=cwd, env=environment, timeout=timeout)


def shared_environment_for(reference_dir: Path) -> SharedEnvironment:
    """Built once from the all-on project's uv.lock (from the shared uv cache), then reused by
    every xdist worker and by later runs while the lock stays the same."""
    reference = InstalledProject(render(all_on(), reference_dir))
    exported = reference.uv("export", "--frozen", "--all-groups", "--no-emit-project", "--no-hashes")
    assert exported.returncode == 0, exported.stderr
    digest = hashlib.sha256(exported.stdout.encode()).hexdigest()[:16]
    path = CACHE_DIR / f"generated-venv-{digest}"
    with open(CACHE_DIR / "generated-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / ".complete").exists():
            requirements = reference.path / "requirements.txt"
            requirements.write_text(exported.stdout)
            for command in (
                ("venv", "--clear", str(path)),
                ("pip", "sync", "--python", str(path / "bin" / "python"), str(requirements)),
            ):
                result = reference.uv(*command)
                assert result.returncode == 0, result.stdout + result.stderr
            (path / ".complete").write_text(exported.stdout)
    return SharedEnvironment(path)


def prime_uv_cache(scratch: Path) -> None:
    """Fill the shared uv cache (online) with the shipped lock's packages, then let every
    render lock offline from it.

    Every render's uv.lock is the shipped lock pruned to its answers: uv needs the index's
    metadata of the locked versions, and no others. A copy of the reference project under
    another name makes uv resolve, and so fetch, all of them. xdist workers share the cache:
    the first primes it, the others find it primed for this lock and go on.
    """
    os.environ["UV_CACHE_DIR"] = str(CACHE_DIR / "uv")
    # The hook finds uv on PATH: put the template's own (from uv.lock) first.
    os.environ["PATH"] = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    reference = (REFERENCE_DIR / "pyproject.toml").read_text()
    digest = hashlib.sha256(reference.encode() + SHIPPED_LOCK.read_bytes()).hexdigest()[:16]
    stamp = CACHE_DIR / f"uv-primed-{digest}"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "uv-prime.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            os.environ.pop("UV_OFFLINE", None)
            project = scratch / "uv-cache-prime"
            project.mkdir()
            renamed = re.sub(r'(?m)^name = ".*"$', 'name = "uv-cache-prime"', reference, count=1)
            (project / "pyproject.toml").write_text(renamed)
            shutil.copyfile(SHIPPED_LOCK, project / "uv.lock")
            result = InstalledProject(project).uv("lock")
            assert result.returncode == 0, result.stdout + result.stderr
            assert unshipped_pins(project / "uv.lock") == set()
            stamp.touch()
    os.environ["UV_OFFLINE"] = "1"
