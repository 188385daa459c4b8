"""The template README states figures about the test-suite: they must be the real ones."""

from __future__ import annotations

import re

from tests.combos import (
    COOKIECUTTER_JSON,
    EXHAUSTIVE_LIMIT,
    TEMPLATE_DIR,
    code_options,
    covering_array,
    exhaustive_size,
    generated_combinations,
    landmarks,
)

README = (TEMPLATE_DIR / "README.md").read_text()


def test_the_readme_states_how_many_combinations_and_rows_there_are() -> None:
    assert exhaustive_size() > EXHAUSTIVE_LIMIT  # else the README should say "every one"
    stated = re.search(r"the code options have ([\d,]+) combinations", README)
    assert stated is not None
    assert int(stated[1].replace(",", "")) == exhaustive_size()
    rows = re.search(r"strength-3 covering array of (\d+) rows", README)
    assert rows is not None
    assert int(rows[1]) == len(covering_array(code_options(), 3, seeds=landmarks()))


def test_the_readme_states_how_many_projects_are_generated_and_run() -> None:
    stated = re.search(r"pairwise-covering set of combinations \((\d+)\s+today\)", README)
    assert stated is not None
    assert int(stated[1]) == len(generated_combinations())


def test_the_options_table_lists_every_variable() -> None:
    table = README.split("## Options", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z_]+)`", table))
    asked = {name for name in COOKIECUTTER_JSON if not name.startswith("_")}
    assert asked <= listed


def test_the_readme_shows_the_benchmarks_last_full_run_as_it_was_written() -> None:
    shown = README.split("<!-- bench:begin -->", 1)[1].split("<!-- bench:end -->", 1)[0]
    written = (TEMPLATE_DIR / "bench" / "results" / "results.md").read_text()
    assert shown.strip() == written.strip()
    assert "3 round(s) of 8 s per case" in written  # a full run, not a smoke run
    assert (TEMPLATE_DIR / "bench" / "results" / "results.svg").is_file()


def test_the_readme_shows_the_load_benchmarks_last_full_run_as_it_was_written() -> None:
    shown = README.split("<!-- load:begin -->", 1)[1].split("<!-- load:end -->", 1)[0]
    written = (TEMPLATE_DIR / "bench" / "results" / "load.md").read_text()
    assert shown.strip() == written.strip()
    assert "| 1024 connections for 30 s: requests |" in written  # a full run
    counts = [int(count.replace(",", "")) for count in re.findall(r"RSS after ([\d,]+) requests", written)]
    assert counts[0] >= 10_000
    assert counts[1] >= 100_000
