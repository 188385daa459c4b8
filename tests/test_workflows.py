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
from tests.schemas import schema_errors
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


TEMPLATE_WORKFLOWS = sorted((TEMPLATE_DIR / ".github" / "workflows").glob("*.yml"))
TEMPLATE_WORKFLOW_IDS = [workflow.stem for workflow in TEMPLATE_WORKFLOWS]


def test_the_template_has_its_ci_and_its_upgrade_check_workflows() -> None:
    assert TEMPLATE_WORKFLOW_IDS == ["ci", "upgrade-check"]


@pytest.mark.parametrize("workflow", TEMPLATE_WORKFLOWS, ids=TEMPLATE_WORKFLOW_IDS)
def test_the_templates_own_workflow_pins_every_action_to_a_commit(workflow: Path) -> None:
    uses = uses_of(workflow)
    assert uses
    assert [use for use in uses if not PINNED_USES.match(use)] == []


@pytest.mark.parametrize("workflow", TEMPLATE_WORKFLOWS, ids=TEMPLATE_WORKFLOW_IDS)
def test_the_templates_own_workflow_has_no_zizmor_findings(workflow: Path) -> None:
    assert zizmor_findings(workflow) == ""


@pytest.mark.parametrize("workflow", TEMPLATE_WORKFLOWS, ids=TEMPLATE_WORKFLOW_IDS)
def test_the_templates_own_workflow_matches_the_workflow_schema(workflow: Path) -> None:
    assert schema_errors(workflow, "github-workflows") == []


def test_the_templates_own_workflow_runs_the_ci_script() -> None:
    workflow = (TEMPLATE_DIR / ".github" / "workflows" / "ci.yml").read_text()
    assert "bash .ci/run" in workflow


def _upgrade_check() -> dict[Any, Any]:
    workflow: dict[Any, Any] = yaml.safe_load(
        (TEMPLATE_DIR / ".github/workflows/upgrade-check.yml").read_text()
    )
    return workflow


def test_the_upgrade_check_runs_weekly_and_on_demand() -> None:
    triggers = _upgrade_check()[True]  # PyYAML reads the key `on` as True
    assert set(triggers) == {"schedule", "workflow_dispatch"}
    assert len(triggers["schedule"]) == 1


def test_the_upgrade_check_runs_the_make_target_with_a_read_only_token() -> None:
    check = _upgrade_check()["jobs"]["check"]
    assert check["permissions"] == {"contents": "read"}
    assert any("make upgrade-check ARGS=--write" in step.get("run", "") for step in check["steps"])
    assert any("bash .ci/install" in step.get("run", "") for step in check["steps"])


def test_the_upgrade_check_proposes_a_pull_request_when_green_and_an_issue_when_red() -> None:
    jobs = _upgrade_check()["jobs"]
    assert jobs["propose"]["if"] == "needs.check.outputs.green == 'true'"
    assert "gh pr create" in jobs["propose"]["steps"][-1]["run"]
    assert "needs.check.outputs.green != 'true'" in jobs["report"]["if"]
    assert "gh issue create --label" in jobs["report"]["steps"][-1]["run"]
    assert jobs["report"]["permissions"] == {"issues": "write"}


def test_the_templates_dependabot_config_matches_its_schema() -> None:
    assert schema_errors(TEMPLATE_DIR / ".github" / "dependabot.yml", "dependabot") == []


def test_dependabot_keeps_the_shipped_lock_current_through_the_reference_copy() -> None:
    config = yaml.safe_load((TEMPLATE_DIR / ".github" / "dependabot.yml").read_text())
    watched = {(update["package-ecosystem"], update["directory"]) for update in config["updates"]}
    assert watched == {("uv", "/reference"), ("uv", "/"), ("github-actions", "/")}
    reference = next(update for update in config["updates"] if update["directory"] == "/reference")
    assert reference["versioning-strategy"] == "lockfile-only"


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
