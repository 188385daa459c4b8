"""The shipped lock (reference/uv.lock) and what a rendered project's uv.lock pins."""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

from tests.combos import TEMPLATE_DIR

REFERENCE_DIR = TEMPLATE_DIR / "reference"
SHIPPED_LOCK = REFERENCE_DIR / "uv.lock"

Pin = tuple[str, str]


def pins(lock: Path) -> set[Pin]:
    """(name, version) of every package the lock holds from an index, the project's own
    entry left out (its name and version are the answers, not a dependency)."""
    return set(_pins_of_text(lock.read_text()))


@functools.cache
def _pins_of_text(text: str) -> frozenset[Pin]:
    """Parsed once per distinct lock text: the shipped lock is read by hundreds of tests."""
    packages = tomllib.loads(text)["package"]
    return frozenset(
        {
            (package["name"], package["version"])
            for package in packages
            if "editable" not in package["source"] and "virtual" not in package["source"]
        }
    )


def unshipped_pins(lock: Path) -> set[Pin]:
    """What the lock pins that the shipped lock does not: nothing, for a project generated
    from the tested versions."""
    return pins(lock) - pins(SHIPPED_LOCK)
