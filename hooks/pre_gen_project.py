"""Validate the answers before Cookiecutter writes anything.

Standard library only: hooks run under the interpreter that runs cookiecutter.
The functions are plain Python so the template's tests can import and call them;
the one Jinja expression below is the only injected value.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

CONTEXT_JSON = r"""{{ cookiecutter | tojson }}"""

# Imports the generated service (and its tests) make: a package with one of these
# names would shadow the real one.
SHADOWED_IMPORTS = frozenset(
    {
        "anyio",
        "fakeredis",
        "fastapi",
        "hiredis",
        "httpx",
        "pydantic",
        "pydantic_core",
        "pydantic_settings",
        "pytest",
        "redis",
        "starlette",
        "test",
        "tests",
        "uvicorn",
    }
)

SLUG_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PACKAGE_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
# PEP 440 public versions in normalised form (epoch, release, pre, post, dev).
VERSION_RE = re.compile(
    r"^([1-9][0-9]*!)?(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*"
    r"((a|b|rc)(0|[1-9][0-9]*))?(\.post(0|[1-9][0-9]*))?(\.dev(0|[1-9][0-9]*))?$"
)
# Characters that would break the TOML, YAML and Python strings the value is written into.
UNSAFE_TEXT_RE = re.compile(r'["\\\x00-\x1f\x7f{}]')


class Problem(Exception):
    """One answer that cannot be used, with the field it belongs to."""

    def __init__(self, field: str, value: object, rule: str) -> None:
        super().__init__(f"{field}={value!r}: {rule}")
        self.field = field


def _text(field: str, value: str, max_length: int) -> None:
    if not value.strip():
        raise Problem(field, value, "must not be empty")
    if len(value) > max_length:
        raise Problem(field, value, f"must be at most {max_length} characters")
    if UNSAFE_TEXT_RE.search(value):
        raise Problem(
            field,
            value,
            "must not contain quotes, backslashes, braces or control characters",
        )


def check_project_name(value: str) -> None:
    _text("project_name", value, 80)
    if not re.search(r"[A-Za-z]", value):
        raise Problem("project_name", value, "must contain at least one letter")


def check_project_slug(value: str) -> None:
    if len(value) > 64 or not SLUG_RE.match(value):
        raise Problem(
            "project_slug",
            value,
            "must be lowercase kebab-case: start with a letter, then letters, digits "
            "and single hyphens (at most 64 characters), e.g. 'redis-service'",
        )


def check_package_name(value: str) -> None:
    if not value.isidentifier() or not PACKAGE_RE.match(value):
        raise Problem(
            "package_name",
            value,
            "must be a lowercase Python identifier (letters, digits, underscores), e.g. 'redis_service'",
        )
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        raise Problem("package_name", value, "is a Python keyword")
    if value in SHADOWED_IMPORTS:
        raise Problem(
            "package_name",
            value,
            f"would shadow the '{value}' package the service imports; choose another name",
        )
    if value in sys.stdlib_module_names:
        raise Problem(
            "package_name",
            value,
            f"would shadow the standard-library module '{value}'; choose another name",
        )


def check_author_email(value: str) -> None:
    if len(value) > 254 or not EMAIL_RE.match(value):
        raise Problem("author_email", value, "must look like an email address, e.g. 'you@example.com'")


def check_version(value: str) -> None:
    if not VERSION_RE.match(value):
        raise Problem(
            "version",
            value,
            "must be a normalised PEP 440 version such as '0.1.0', '1.0rc1' or '2.0.post1'",
        )


FIELD_CHECKS: Mapping[str, Callable[[str], None]] = {
    "project_name": check_project_name,
    "project_slug": check_project_slug,
    "package_name": check_package_name,
    "description": lambda value: _text("description", value, 200),
    "author_name": lambda value: _text("author_name", value, 100),
    "author_email": check_author_email,
    "version": check_version,
}


def combination_warnings(context: Mapping[str, Any]) -> list[str]:
    """Answers that work together but deserve a word before generation."""
    warnings = []
    if context.get("redis_persistence") == "none" and context.get("__keeps_state"):
        kept = []
        if context.get("use_sessions"):
            kept.append("sessions (every user is logged out)")
        if context.get("rate_limiting", "none") != "none":
            kept.append("rate-limit counters (every client's quota resets)")
        if kept:
            warnings.append(
                "redis_persistence=none keeps nothing across a Redis restart: "
                + " and ".join(kept)
                + " are lost on every restart. The generated redis.conf uses "
                "maxmemory-policy noeviction, so they are never evicted either; choose "
                "redis_persistence=aof to keep them."
            )
    return warnings


def validate(context: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for field, check in FIELD_CHECKS.items():
        try:
            check(str(context[field]))
        except Problem as problem:
            problems.append(problem)
    return problems


def main() -> int:
    context: dict[str, Any] = json.loads(CONTEXT_JSON)
    problems = validate(context)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        print("Nothing was generated. Fix the answers above and run cookiecutter again.", file=sys.stderr)
        return 1
    for warning in combination_warnings(context):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
