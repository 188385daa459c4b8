"""Remove what disabled options own, then print the next steps.

The manifest is `_manifest` in cookiecutter.json: a list of entries, each with
`paths` (relative to the project, `{package_name}` expanded) and `when`, a mapping
of option -> values that keep the paths (all must hold), or a list of such
mappings (any may hold). Paths whose entry does not hold are deleted.

The project arrives with the template's shipped lock as its uv.lock: the lock of the
everything-on project, whose versions the template's CI tested (reference/uv.lock in the
template). When uv is on PATH, `uv lock` prunes it to these answers: uv keeps every locked
version as it is and drops what a disabled option no longer needs, so no version newer than
the tested ones gets in. This is the one step that may use the network (to read the package
index's metadata of those versions). Without uv, or when it cannot lock, the shipped lock
stays, marked older than pyproject.toml so that `make install` prunes it the same way first;
one line says so, and the project is generated all the same.

Standard library only, and safe to re-run (cruft re-runs it): no git, no installs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

CONTEXT_JSON = r"""{{ cookiecutter | tojson }}"""

Condition = Mapping[str, Sequence[Any]]


def condition_holds(when: Condition | Sequence[Condition], context: Mapping[str, Any]) -> bool:
    if isinstance(when, Mapping):
        return all(context[option] in allowed for option, allowed in when.items())
    return any(condition_holds(alternative, context) for alternative in when)


def expand(path: str, context: Mapping[str, Any]) -> str:
    return path.format(package_name=context["package_name"])


def owned_paths(
    manifest: Iterable[Mapping[str, Any]], context: Mapping[str, Any]
) -> tuple[list[str], list[str]]:
    """Split the manifest's paths into (kept, removed) for these answers."""
    kept: list[str] = []
    removed: list[str] = []
    for entry in manifest:
        target = kept if condition_holds(entry["when"], context) else removed
        target.extend(expand(path, context) for path in entry["paths"])
    return kept, removed


def remove_paths(root: Path, paths: Iterable[str]) -> None:
    for relative in paths:
        path = root / relative
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        _prune_empty_parents(root, path.parent)


def _prune_empty_parents(root: Path, directory: Path) -> None:
    root = root.resolve()
    directory = directory.resolve()
    while directory != root and root in directory.parents and directory.is_dir():
        if any(directory.iterdir()):
            return
        directory.rmdir()
        directory = directory.parent


LOCK_HELP = (
    "uv.lock holds the template's tested versions for every option ({why}): `make install`"
    " prunes it to yours (`uv lock`, which keeps those versions) before installing."
)
NOT_A_LOCK = (
    "uv.lock did not arrive as the template's lock (a symlink unpacked from an archive?):"
    " run `uv lock`, which resolves the newest releases, not the tested ones."
)


def is_shipped_lock(lock: Path) -> bool:
    """The template's lock arrives through a symlink; unpacked from a zip archive, such a
    link becomes a short file holding its target's path instead."""
    try:
        return lock.read_text(encoding="utf-8").startswith("version = ")
    except (OSError, UnicodeDecodeError):
        return False


def mark_stale(project: Path) -> None:
    """Make uv.lock older than pyproject.toml: the Makefile's `uv.lock` rule re-locks it."""
    pyproject = (project / "pyproject.toml").stat()
    earlier = pyproject.st_mtime - 60
    os.utime(project / "uv.lock", (earlier, earlier))


def write_lock(project: Path, uv: str | None, timeout: float = 300) -> str | None:
    """Prune the shipped lock to this project with uv; None when done, else why not (one line)."""
    if not is_shipped_lock(project / "uv.lock"):
        (project / "uv.lock").unlink(missing_ok=True)
        return NOT_A_LOCK
    if uv is None:
        mark_stale(project)
        return LOCK_HELP.format(why="uv is not installed")
    try:
        result = subprocess.run(
            [uv, "lock", "--quiet"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        mark_stale(project)
        return LOCK_HELP.format(why=f"uv lock: {type(error).__name__}")
    if result.returncode != 0:
        mark_stale(project)
        last = (result.stderr.strip().splitlines() or ["uv lock failed"])[-1]
        return LOCK_HELP.format(why=f"uv lock: {last.strip()[:200]}")
    return None


def next_steps(context: Mapping[str, Any]) -> str:
    lines = [
        f"Generated {context['project_slug']}. Next steps:",
        f"  cd {context['project_slug']}",
        "  make install   # .venv with the service and its dev tools, as uv.lock says",
        "  make test      # unit tests, and integration tests on a throwaway redis-server",
        "  make run       # http://127.0.0.1:8000/docs  (REDIS_URL=memory:// runs without Redis)",
    ]
    if context.get("use_docker"):
        lines.append("  docker compose up --build")
    return "\n".join(lines)


def main() -> int:
    context: dict[str, Any] = json.loads(CONTEXT_JSON)
    _, removed = owned_paths(context["_manifest"], context)
    remove_paths(Path.cwd(), removed)
    problem = write_lock(Path.cwd(), shutil.which("uv"))
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    print(next_steps(context))
    return 0


if __name__ == "__main__":
    sys.exit(main())
