"""Rendering the template with given answers, and the environment generated projects run in."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cookiecutter.main import cookiecutter

from tests.combos import COOKIECUTTER_JSON, TEMPLATE_DIR, all_on
from tests.tools import BIN, run, tool

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


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a generated project's tools run in: nothing of ours leaks in, but
    uv's shared cache (UV_CACHE_DIR, UV_OFFLINE) carries over."""
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TERM", "SYSTEMROOT", "UV_CACHE_DIR", "UV_OFFLINE")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["PATH"] = os.environ.get("PATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


class InstalledProject:
    """A generated project installed into its own .venv by `uv sync --locked`, from the
    shared uv cache (so the second project on costs seconds, not a download)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def uv(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run(tool("uv"), *args, cwd=self.path, env=clean_environment(), timeout=timeout)

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        """One of the project's own tools, from its .venv."""
        executable = str(self.path / ".venv" / "bin" / args[0])
        return run(executable, *args[1:], cwd=self.path, env=clean_environment(env), timeout=timeout)


def prime_uv_cache(reference_dir: Path) -> None:
    """Fill the shared uv cache once (online), then let every render lock offline from it.

    Every combination's dependencies are a subset of the all-on project's, so its lock
    resolves from what the all-on lock fetched. xdist workers share the cache: the first
    primes it, the others wait.
    """
    os.environ["UV_CACHE_DIR"] = str(CACHE_DIR / "uv")
    # The hook finds uv on PATH: put the template's own (from uv.lock) first.
    os.environ["PATH"] = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "uv-prime.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.environ.pop("UV_OFFLINE", None)
        render(all_on(), reference_dir)
    os.environ["UV_OFFLINE"] = "1"
