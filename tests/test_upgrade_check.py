"""The drift canary's report (tools/upgrade_check.py): what moved, and what broke."""

from __future__ import annotations

from pathlib import Path

from tools.upgrade_check import Drift, Outcome, drift, report, summary


def _lock(path: Path, packages: dict[str, str]) -> Path:
    source = 'source = { registry = "https://pypi.org/simple" }'
    entries = "".join(
        f'\n[[package]]\nname = "{name}"\nversion = "{version}"\n{source}\n'
        for name, version in packages.items()
    )
    path.write_text('version = 1\nrevision = 3\nrequires-python = ">=3.11"\n' + entries)
    return path


def test_drift_lists_changed_added_and_removed_packages(tmp_path: Path) -> None:
    old = _lock(tmp_path / "old.lock", {"redis": "8.1.0", "idna": "3.20", "gone": "1.0"})
    new = _lock(tmp_path / "new.lock", {"redis": "8.2.0", "idna": "3.20", "fresh": "2.0"})
    assert drift(old, new) == Drift(
        changed=[("redis", "8.1.0", "8.2.0")], added=[("fresh", "2.0")], removed=[("gone", "1.0")]
    )


def test_the_report_puts_every_move_in_its_table() -> None:
    text = report(Drift([("redis", "8.1.0", "8.2.0")], [("fresh", "2.0")], []), [])
    assert "| redis | 8.1.0 | 8.2.0 |" in text
    assert "| fresh | (none) | 2.0 |" in text
    assert "2 change(s)" in text


def test_a_failed_check_makes_the_report_red_with_pytests_failures() -> None:
    output = "....F\nnoise\nFAILED tests/unit/test_x.py::test_y - AssertionError\n1 failed, 4 passed in 2.00s"
    outcomes = [
        Outcome("standalone", "typecheck", True, 12.0, "Success"),
        Outcome("cluster", "test", False, 300.0, output),
    ]
    text = report(Drift([], [], []), outcomes)
    assert "| cluster | test | **failed** | 300 s |" in text
    assert "### cluster: `make test` failed" in text
    assert "FAILED tests/unit/test_x.py::test_y" in text
    assert "noise" not in text
    assert text.rstrip().endswith("fix the template for these releases first.")


def test_a_green_run_says_the_lock_can_be_shipped() -> None:
    text = report(Drift([], [], []), [Outcome("standalone", "test", True, 1.0, "")])
    assert "**failed**" not in text
    assert "Green: the upgraded lock can be shipped." in text


def test_without_pytest_failures_the_summary_is_the_outputs_tail() -> None:
    output = "\n".join(f"line {number}" for number in range(100))
    assert summary(output).splitlines() == [f"line {number}" for number in range(40, 100)]


def test_an_unresolvable_upgrade_reports_uvs_error() -> None:
    text = report(Drift([], [], []), [], lock_error="No solution found when resolving dependencies")
    assert "`uv lock --upgrade` failed" in text
    assert "No solution found" in text
