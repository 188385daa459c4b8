"""CHANGELOG.md: one section per release, the newest the version projects record."""

from __future__ import annotations

from tests.combos import COOKIECUTTER_JSON
from tests.releases import PREVIOUS_RELEASE, releases


def test_the_newest_release_is_the_version_projects_record() -> None:
    assert releases()[0][0] == COOKIECUTTER_JSON["_template_version"]


def test_the_releases_are_listed_newest_first_without_repeats() -> None:
    versions = [tuple(int(part) for part in version.split(".")) for version, _ in releases()]
    assert versions == sorted(set(versions), reverse=True)


def test_every_release_after_the_first_says_what_an_existing_project_must_do() -> None:
    for (_, section), (older, _) in zip(releases(), releases()[1:], strict=False):
        assert f"### What a project generated from {older} must do" in section


def test_the_previous_release_is_the_commit_the_cruft_update_test_starts_from() -> None:
    previous_version, previous_section = releases()[1]
    assert PREVIOUS_RELEASE in previous_section, previous_version
