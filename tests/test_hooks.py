"""The hooks: answers are validated before anything is written; the manifest decides what stays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cookiecutter.exceptions import FailedHookException

from hooks import post_gen_project as post_gen
from hooks import pre_gen_project as pre_gen
from tests.combos import COOKIECUTTER_JSON, TEMPLATE_DIR, answers, defaults
from tests.rendering import render

# (field, bad value, words the error must contain)
BAD_ANSWERS: list[tuple[str, str, str]] = [
    ("project_slug", "1service", "kebab-case"),
    ("project_slug", "My-Service", "kebab-case"),
    ("project_slug", "my--service", "kebab-case"),
    ("project_slug", "my_service", "kebab-case"),
    ("package_name", "class", "keyword"),
    ("package_name", "match", "keyword"),
    ("package_name", "redis", "shadow"),
    ("package_name", "fastapi", "shadow"),
    ("package_name", "tests", "shadow"),
    ("package_name", "json", "standard-library"),
    ("package_name", "asyncio", "standard-library"),
    ("package_name", "my-service", "identifier"),
    ("package_name", "MyService", "identifier"),
    ("author_email", "not-an-email", "email"),
    ("author_email", "me@localhost", "email"),
    ("version", "1.0.0-beta", "PEP 440"),
    ("version", "v1", "PEP 440"),
    ("project_name", 'Say "hi"', "quotes"),
    ("description", "back\\slash", "quotes"),
    ("author_name", "", "empty"),
]


def valid_context(**changes: Any) -> dict[str, Any]:
    context = answers({**defaults(), "project_slug": "redis-service", "package_name": "redis_service"})
    context.update(changes)
    return context


@pytest.mark.parametrize(("field", "value", "rule"), BAD_ANSWERS)
def test_validation_names_the_field_and_the_rule(field: str, value: str, rule: str) -> None:
    problems = pre_gen.validate(valid_context(**{field: value}))
    assert [problem.field for problem in problems] == [field]
    assert rule in str(problems[0])


def test_the_default_answers_are_valid() -> None:
    assert pre_gen.validate(valid_context()) == []


@pytest.mark.parametrize(("field", "value", "rule"), BAD_ANSWERS)
def test_a_bad_answer_stops_generation_and_leaves_no_directory(
    field: str, value: str, rule: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    context: dict[str, Any] = {field: value}
    if field != "project_slug":
        context["project_slug"] = "bad-input"
    with pytest.raises(FailedHookException):
        render(context, tmp_path)
    stderr = capfd.readouterr().err
    assert f"error: {field}=" in stderr
    assert rule in stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_choice_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ci"):
        render({"ci": "jenkins"}, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_render_refuses_keys_cookiecutter_would_silently_ignore(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="use_cahce"):
        render({"use_cahce": False}, tmp_path)


@pytest.mark.parametrize(
    ("use_sessions", "rate_limiting", "lost"),
    [(True, "none", "sessions"), (False, "gcra", "rate-limit counters"), (True, "gcra", "sessions")],
)
def test_no_persistence_with_sessions_or_limits_warns_what_a_restart_loses(
    use_sessions: bool,
    rate_limiting: str,
    lost: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    answers = {"redis_persistence": "none", "use_sessions": use_sessions, "rate_limiting": rate_limiting}
    render(answers, tmp_path)
    stderr = capfd.readouterr().err
    assert "warning: redis_persistence=none" in stderr
    assert lost in stderr
    assert "restart" in stderr


def test_no_persistence_for_a_pure_cache_does_not_warn(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    render({"redis_persistence": "none", "use_sessions": False, "rate_limiting": "none"}, tmp_path)
    assert "warning" not in capfd.readouterr().err


@pytest.mark.parametrize(
    (
        "use_cache", "use_sessions", "rate_limiting",
        "keeps_state", "uses_breaker", "limits_logins", "limits_cached",
    ),
    [
        (False, False, "none", "", "", "", ""),
        (True, False, "none", "", "yes", "", ""),
        (False, True, "none", "yes", "yes", "", ""),
        (False, False, "gcra", "yes", "yes", "", ""),
        (True, False, "gcra", "yes", "yes", "", "yes"),
        (True, True, "fixed_window", "yes", "yes", "yes", "yes"),
    ],
)  # fmt: skip
def test_option_interactions_are_derived_once_from_the_answers(
    use_cache: bool,
    use_sessions: bool,
    rate_limiting: str,
    keeps_state: str,
    uses_breaker: str,
    limits_logins: str,
    limits_cached: str,
) -> None:
    context = answers({"use_cache": use_cache, "use_sessions": use_sessions, "rate_limiting": rate_limiting})
    assert context["__keeps_state"] == keeps_state
    assert context["__uses_breaker"] == uses_breaker
    assert context["__limits_logins"] == limits_logins
    assert context["__limits_cached_routes"] == limits_cached


def test_no_variable_switches_on_nested_templates_or_breaks_cruft() -> None:
    forbidden = {"template", "templates", "_output_dir", "_repo_dir", "_checkout", "_cookiecutter"}
    assert not forbidden & set(COOKIECUTTER_JSON)
    template_files = [
        *(TEMPLATE_DIR / "hooks").glob("*.py"),
        *(path for path in (TEMPLATE_DIR / "{{cookiecutter.project_slug}}").rglob("*") if path.is_file()),
    ]
    for path in template_files:
        text = path.read_text(errors="replace")
        for name in ("_output_dir", "_repo_dir", "_checkout", "_cookiecutter"):
            assert f"cookiecutter.{name}" not in text, f"{path}: {name}"


def test_every_answered_variable_has_a_prompt() -> None:
    answered = {name for name in COOKIECUTTER_JSON if not name.startswith("_")}
    assert answered == set(COOKIECUTTER_JSON["__prompts__"])


def test_booleans_are_real_booleans() -> None:
    for name, value in COOKIECUTTER_JSON.items():
        assert value not in ("y", "n", "yes", "no"), name
        if name.startswith("use_"):
            assert isinstance(value, bool), name


def test_a_condition_holds_when_every_option_has_an_allowed_value() -> None:
    context = {"use_docker": True, "ci": "github"}
    assert post_gen.condition_holds({"use_docker": [True], "ci": ["github", "gitlab"]}, context)
    assert not post_gen.condition_holds({"use_docker": [True], "ci": ["gitlab"]}, context)


def test_a_list_of_conditions_holds_when_any_holds() -> None:
    context = {"use_docker": False, "ci": "github"}
    assert post_gen.condition_holds([{"use_docker": [True]}, {"ci": ["github"]}], context)
    assert not post_gen.condition_holds([{"use_docker": [True]}, {"ci": ["none"]}], context)


def test_owned_paths_expand_the_package_name() -> None:
    manifest = [{"when": {"use_docker": [False]}, "paths": ["src/{package_name}/x.py"]}]
    kept, removed = post_gen.owned_paths(manifest, {"use_docker": True, "package_name": "pkg"})
    assert (kept, removed) == ([], ["src/pkg/x.py"])


def test_removing_the_last_file_of_a_folder_removes_the_folder(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "only.txt").write_text("x")
    (tmp_path / "a" / "keep.txt").write_text("x")
    post_gen.remove_paths(tmp_path, ["a/b/only.txt"])
    assert not (tmp_path / "a" / "b").exists()
    assert (tmp_path / "a" / "keep.txt").exists()


def test_the_post_generation_hook_can_run_twice(tmp_path: Path) -> None:
    # cruft re-runs hooks: removing what is already gone must not fail.
    (tmp_path / "gone.txt").write_text("x")
    post_gen.remove_paths(tmp_path, ["gone.txt"])
    post_gen.remove_paths(tmp_path, ["gone.txt"])
    assert list(tmp_path.iterdir()) == []


def _project_with_lock(root: Path, lock_text: str) -> Path:
    (root / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0"\n')
    (root / "uv.lock").write_text(lock_text)
    return root


def test_a_lock_that_arrived_as_a_link_path_is_removed_and_said_so(tmp_path: Path) -> None:
    project = _project_with_lock(tmp_path, "../reference/uv.lock")
    problem = post_gen.write_lock(project, uv="/nonexistent/uv")
    assert problem == post_gen.NOT_A_LOCK
    assert not (project / "uv.lock").exists()


def test_without_uv_the_shipped_lock_stays_marked_for_make_install(tmp_path: Path) -> None:
    project = _project_with_lock(tmp_path, "version = 1\n")
    problem = post_gen.write_lock(project, uv=None)
    assert problem is not None
    assert "uv is not installed" in problem
    assert (project / "uv.lock").read_text() == "version = 1\n"
    assert (project / "uv.lock").stat().st_mtime < (project / "pyproject.toml").stat().st_mtime


def test_when_uv_cannot_lock_the_shipped_lock_stays_and_the_reason_is_one_line(tmp_path: Path) -> None:
    project = _project_with_lock(tmp_path, "version = 1\n")
    failing_uv = tmp_path / "uv"
    failing_uv.write_text("#!/bin/sh\necho 'first line' >&2\necho 'no network' >&2\nexit 2\n")
    failing_uv.chmod(0o755)
    problem = post_gen.write_lock(project, uv=str(failing_uv))
    assert problem is not None
    assert "uv lock: no network" in problem
    assert "\n" not in problem
    assert (project / "uv.lock").read_text() == "version = 1\n"
    assert (project / "uv.lock").stat().st_mtime < (project / "pyproject.toml").stat().st_mtime
