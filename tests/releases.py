"""The template's releases, as CHANGELOG.md records them."""

from __future__ import annotations

import re

from tests.combos import TEMPLATE_DIR

CHANGELOG = (TEMPLATE_DIR / "CHANGELOG.md").read_text()
# The release before this one (0.9.0): projects created from it must update to this one.
PREVIOUS_RELEASE = "eac56ed7817e50221fecb93834efb4e34764f2ea"


def releases() -> list[tuple[str, str]]:
    """(version, section text) of every release, newest first."""
    parts = re.split(r"(?m)^## (\d+\.\d+\.\d+) \(\d{4}-\d{2}-\d{2}\)$", CHANGELOG)
    return list(zip(parts[1::2], parts[2::2], strict=True))
