"""Reading /metrics in tests: parsed with client_python's own parser, then looked up by name
and labels."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package_name }}.observability.metrics import PREFIX


class Scrape:
    """One scrape: every sample's value by (name, labels)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in self.families
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        """The sample `<prefix>_<name>` with exactly these labels; 0 when there is none."""
        return self.samples.get((f"{PREFIX}_{name}", frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum of `<prefix>_<name>` over every sample that has these labels (and others)."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, sample_labels), value in self.samples.items()
            if sample == f"{PREFIX}_{name}" and wanted <= sample_labels
        )


def promtool() -> str:
    """promtool's path (the OS package `prometheus`); else skip, saying why
    (REQUIRE_PROMTOOL=1: fail instead)."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool not found, and REQUIRE_PROMTOOL=1")
        pytest.skip("promtool not found: install the OS package prometheus")
    return path


def promtool_problems(text: str) -> str:
    """What `promtool check metrics` says about the exposition ("" when it passes)."""
    result = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    return "" if result.returncode == 0 else (result.stdout + result.stderr).strip()
