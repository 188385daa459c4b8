"""The README's settings table is checked against Settings, so the two cannot drift."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from {{ cookiecutter.package_name }}.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `(?P<name>[A-Z0-9_]+)` \| (?P<default>[^|]*) \|", re.MULTILINE)


def documented_settings() -> dict[str, str]:
    section = README.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    return {match["name"]: match["default"].strip() for match in ROW.finditer(section)}


def rendered_default(value: Any) -> str:
    if value is None or isinstance(value, SecretStr):
        return "(unset)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value in ("", []):
        return "(empty)"
    if isinstance(value, list):
        return f"`{','.join(value)}`"
    return f"`{getattr(value, 'value', value)}`"


def test_every_setting_is_documented_and_nothing_else() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    assert set(documented_settings()) == fields


def test_documented_defaults_match_the_code() -> None:
    documented = documented_settings()
    defaults = Settings.model_construct()
    for name in Settings.model_fields:
        assert documented[name.upper()] == rendered_default(getattr(defaults, name)), name
