"""CI definitions, the template's own and the generated ones: actions pinned to commits,
no zizmor findings, update bots that their services accept."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.combos import TEMPLATE_DIR, params, render_combinations
from tests.rendering import Renders
from tests.tools import run, tool

GITHUB_RENDERS = params(c for c in render_combinations() if c["ci"] == "github")
PINNED_USES = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def uses_of(workflow: Path) -> list[str]:
    document: dict[str, Any] = yaml.safe_load(workflow.read_text())
    return [
        step["uses"] for job in document["jobs"].values() for step in job.get("steps", []) if "uses" in step
    ]


def zizmor_findings(workflow: Path) -> str:
    """Everything zizmor reports offline, informational findings included ("" if none)."""
    result = run(tool("zizmor"), "--offline", "--persona=auditor", str(workflow), cwd=workflow.parent)
    if result.returncode == 0 and "No findings" in result.stdout:
        return ""
    return result.stdout + result.stderr


def test_the_templates_own_workflow_pins_every_action_to_a_commit() -> None:
    uses = uses_of(TEMPLATE_DIR / ".github" / "workflows" / "ci.yml")
    assert uses
    assert [use for use in uses if not PINNED_USES.match(use)] == []


def test_the_templates_own_workflow_has_no_zizmor_findings() -> None:
    assert zizmor_findings(TEMPLATE_DIR / ".github" / "workflows" / "ci.yml") == ""


def test_the_templates_own_workflow_runs_the_ci_script() -> None:
    workflow = (TEMPLATE_DIR / ".github" / "workflows" / "ci.yml").read_text()
    assert "bash .ci/run" in workflow


def test_the_pin_pattern_refuses_tags_and_short_shas() -> None:
    assert PINNED_USES.match("actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1")
    for unpinned in ("actions/checkout@v4", "actions/checkout@3d3c42e", "actions/checkout@main"):
        assert not PINNED_USES.match(unpinned)


@pytest.mark.parametrize("combination", GITHUB_RENDERS)
def test_the_generated_workflow_pins_every_action_to_a_commit(
    combination: dict[str, Any], renders: Renders
) -> None:
    uses = uses_of(renders.get(combination) / ".github" / "workflows" / "ci.yml")
    assert uses
    assert [use for use in uses if not PINNED_USES.match(use)] == []


@pytest.mark.parametrize("combination", GITHUB_RENDERS)
def test_the_generated_workflow_has_no_zizmor_findings(combination: dict[str, Any], renders: Renders) -> None:
    assert zizmor_findings(renders.get(combination) / ".github" / "workflows" / "ci.yml") == ""


@pytest.mark.parametrize("combination", GITHUB_RENDERS)
def test_dependabot_watches_uv_actions_and_the_images(combination: dict[str, Any], renders: Renders) -> None:
    config = yaml.safe_load((renders.get(combination) / ".github" / "dependabot.yml").read_text())
    ecosystems = {update["package-ecosystem"] for update in config["updates"]}
    expected = {"uv", "github-actions"} | (
        {"docker", "docker-compose"} if combination["use_docker"] else set()
    )
    assert ecosystems == expected
    assert all("minor-and-patch" in update["groups"] for update in config["updates"])
