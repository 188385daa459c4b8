"""Every rendered combination: renders, leaves no Jinja, honours the manifest, parses, lints."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hooks.post_gen_project import condition_holds, owned_paths
from tests.combos import COOKIECUTTER_JSON, Combination, answers, params, render_combinations
from tests.locks import pins, unshipped_pins
from tests.rendering import Renders
from tests.schemas import schema_errors
from tests.tools import run, tool

COMBINATIONS = render_combinations()
MANIFEST: list[dict[str, Any]] = COOKIECUTTER_JSON["_manifest"]
LEFTOVER_JINJA = re.compile(rb"\{\{\s*cookiecutter|\{%|\{#")


def _params(keep: Callable[[Combination], bool] = lambda combination: True) -> list[Any]:
    return params(c for c in COMBINATIONS if keep(c))


def _files(project: Path) -> list[Path]:
    return sorted(path for path in project.rglob("*") if path.is_file())


@pytest.mark.parametrize("combination", _params())
def test_no_template_syntax_survives(combination: dict[str, Any], renders: Renders) -> None:
    project = renders.get(combination)
    leftovers = [
        str(path.relative_to(project)) for path in _files(project) if LEFTOVER_JINJA.search(path.read_bytes())
    ]
    assert leftovers == []


@pytest.mark.parametrize("combination", _params())
def test_manifest_paths_follow_the_answers(combination: dict[str, Any], renders: Renders) -> None:
    project = renders.get(combination)
    kept, removed = owned_paths(MANIFEST, answers(combination))
    assert [path for path in kept if not (project / path).exists()] == []
    assert [path for path in removed if (project / path).exists()] == []


@pytest.mark.parametrize("combination", _params())
def test_disabled_options_leave_no_trace(combination: dict[str, Any], renders: Renders) -> None:
    project = renders.get(combination)
    texts = {path: path.read_text(errors="replace") for path in _files(project)}
    context = answers(combination)
    found = [
        f"{trace!r} in {path.relative_to(project)}"
        for entry in MANIFEST
        if not condition_holds(entry["when"], context)
        for trace in entry.get("traces", [])
        for path, text in texts.items()
        if trace in text
    ]
    assert found == []


@pytest.mark.parametrize("combination", _params())
def test_structured_files_parse(combination: dict[str, Any], renders: Renders) -> None:
    project = renders.get(combination)
    parsed = []
    for path in _files(project):
        if path.name == "uv.lock":
            continue  # read by test_the_dependencies_are_locked_at_the_shipped_versions
        if path.suffix == ".toml":
            tomllib.loads(path.read_text())
        elif path.suffix in {".yaml", ".yml"}:
            yaml.safe_load(path.read_text())
        elif path.suffix == ".json":
            json.loads(path.read_text())
        else:
            continue
        parsed.append(path.name)
    assert "pyproject.toml" in parsed
    assert ".pre-commit-config.yaml" in parsed


@pytest.mark.parametrize("combination", _params())
def test_the_dependencies_are_locked_at_the_shipped_versions(
    combination: dict[str, Any], renders: Renders
) -> None:
    lock = renders.get(combination) / "uv.lock"
    assert {"fastapi", "redis", "uvicorn", "pytest", "mypy"} <= {name for name, _ in pins(lock)}
    assert unshipped_pins(lock) == set()


@pytest.mark.parametrize("combination", _params(lambda c: c["ci"] == "github"))
def test_github_workflow_keeps_its_expressions(combination: dict[str, Any], renders: Renders) -> None:
    workflow = (renders.get(combination) / ".github" / "workflows" / "ci.yml").read_text()
    assert "${{ github.workflow }}" in workflow


@pytest.mark.parametrize("combination", _params())
def test_ruff_check_passes(combination: dict[str, Any], renders: Renders) -> None:
    result = run(tool("ruff"), "check", "--no-cache", ".", cwd=renders.get(combination))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("combination", _params())
def test_ruff_format_check_passes(combination: dict[str, Any], renders: Renders) -> None:
    result = run(tool("ruff"), "format", "--check", "--no-cache", ".", cwd=renders.get(combination))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("combination", _params(lambda c: c["use_docker"]))
def test_dockerfile_passes_hadolint(combination: dict[str, Any], renders: Renders) -> None:
    result = run(tool("hadolint"), "Dockerfile", cwd=renders.get(combination))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("combination", _params(lambda c: c["observability"] in ("prometheus", "both")))
def test_prometheus_config_passes_promtool(combination: dict[str, Any], renders: Renders) -> None:
    """promtool comes from the OS package prometheus (.ci/run installs it)."""
    config = "prometheus/prometheus.yml"
    result = run(tool("promtool"), "check", "config", config, cwd=renders.get(combination))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("combination", _params(lambda c: c["observability"] in ("otel", "both")))
def test_the_collector_config_defines_what_its_pipeline_uses(
    combination: dict[str, Any], renders: Renders
) -> None:
    """No collector runs here: its config is read as the collector would wire it."""
    config = yaml.safe_load((renders.get(combination) / "otel/collector.yaml").read_text())
    (pipeline,) = config["service"]["pipelines"].values()
    for kind in ("receivers", "processors", "exporters"):
        for component in pipeline[kind]:
            assert component in config[kind], (kind, component)
    # The app's exporter sends OTLP/HTTP, to port 4318 (compose.yaml, README).
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"


@pytest.mark.parametrize("combination", _params())
def test_shell_scripts_pass_shellcheck(combination: dict[str, Any], renders: Renders) -> None:
    project = renders.get(combination)
    scripts = sorted(str(path.relative_to(project)) for path in project.rglob("*.sh"))
    assert scripts, "redis/entrypoint.sh at least"
    result = run(tool("shellcheck"), "--shell=sh", *scripts, cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr


# Patterns that break on Redis Cluster or scan the whole keyspace. Keys must share a hash
# tag within one script or multi-key command; nothing may pick a database other than 0.
CLUSTER_UNSAFE = {
    "KEYS command": re.compile(r"""(?i)(redis\.call\(\s*['"]keys['"]|\.keys\(|"KEYS")"""),
    "SCAN over the keyspace": re.compile(r"""(?i)(redis\.call\(\s*['"]scan['"]|\.scan\(|\.scan_iter\()"""),
    "multi-key MGET/MSET": re.compile(r"""(?i)(\.mget\(|\.mset\(|['"]mget['"]|['"]mset['"])"""),
    # (router.delete/app.delete declare HTTP routes, not Redis commands)
    "multi-key DEL/UNLINK": re.compile(
        r"""(?i)((?<!router)(?<!app)\.(delete|unlink)\([^)]*,|['"](del|unlink)['"]\s*,[^)]*,)"""
    ),
    "SELECT / a database other than 0": re.compile(
        r"""(?i)(\.select\(|['"]select['"]|redis://[^"'\s]*/[1-9])"""
    ),
    "FLUSHALL/FLUSHDB": re.compile(r"""(?i)(flushall|flushdb)"""),
}


@pytest.mark.parametrize("combination", _params())
def test_service_code_and_lua_are_cluster_safe(combination: dict[str, Any], renders: Renders) -> None:
    """The service's own code (src/) and scripts: no KEYS, SCAN, cross-slot multi-key
    commands, SELECT or FLUSH*. (Tests may inspect their own servers as they like.)"""
    project = renders.get(combination)
    source = project / "src"
    found = [
        f"{name}: {path.relative_to(project)}:{number}: {line.strip()}"
        for path in sorted([*source.rglob("*.py"), *source.rglob("*.lua")])
        for number, line in enumerate(path.read_text().splitlines(), 1)
        for name, pattern in CLUSTER_UNSAFE.items()
        if pattern.search(line)
    ]
    assert found == []


def test_the_cluster_safety_scan_catches_what_it_looks_for() -> None:
    offending = [
        "redis.call('KEYS', '*')",
        "await redis.keys('*')",
        "await redis.scan_iter(match='x')",
        "await redis.mget(a, b)",
        "await redis.delete(a, b)",
        "redis.call('del', KEYS[1], KEYS[2])",
        "await redis.select(2)",
        "url = 'redis://localhost:6379/3'",
        "await redis.flushall()",
    ]
    for line in offending:
        assert any(pattern.search(line) for pattern in CLUSTER_UNSAFE.values()), line
    for line in ["redis.call('DEL', KEYS[1])", '@router.delete("/cache", status_code=204)']:
        assert not any(pattern.search(line) for pattern in CLUSTER_UNSAFE.values()), line


SCHEMAS = {
    "compose.yaml": "compose-spec",
    ".github/workflows/ci.yml": "github-workflows",
    ".github/dependabot.yml": "dependabot",
    ".gitlab-ci.yml": "gitlab-ci",
    "renovate.json": "renovate",
}


@pytest.mark.parametrize("combination", _params(lambda c: c["use_docker"] or c["ci"] != "none"))
def test_compose_and_ci_files_match_their_schemas(combination: dict[str, Any], renders: Renders) -> None:
    project = renders.get(combination)
    checked = 0
    for relative, schema in SCHEMAS.items():
        if (project / relative).exists():
            assert schema_errors(project / relative, schema) == [], relative
            checked += 1
    assert checked >= 1


def test_the_schema_check_finds_what_breaks_a_file(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  app:\n    ports: 8000\n")
    renovate = tmp_path / "renovate.json"
    renovate.write_text('{"extends": 5}')
    assert schema_errors(compose, "compose-spec") != []
    assert schema_errors(renovate, "renovate") != []
