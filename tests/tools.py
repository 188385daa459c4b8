"""Running the template's tools: the ones installed beside this interpreter, one way."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

# The template's own virtual environment (make install), where its tools live.
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The path of a tool from the template's environment, else from PATH."""
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is not installed: it is one of the template's dev tools"
    return found


def run(
    *command: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; the caller checks the return code."""
    return subprocess.run(
        command,
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
