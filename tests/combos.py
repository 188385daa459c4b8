"""Which option combinations the template's tests render, read from cookiecutter.json.

A new boolean or choice in cookiecutter.json is picked up here without editing the
tests. Options that only change metadata (listed in METADATA_OPTIONS) are varied one
at a time against the defaults; the others are combined.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.prompt import prompt_for_config

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
COOKIECUTTER_JSON = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text())

# Choices that change no code, only text (license file, Python image tag, classifiers).
METADATA_OPTIONS = frozenset({"license", "python_version"})
# Options that change files the generated project's own type-check and test-suite never
# read (CI workflows, Docker files): the render checks cover them; installing and running
# projects that differ only in them would test nothing new.
NOT_RUN_OPTIONS = frozenset({"ci", "use_docker"})

# Above this many combinations of code options, the render checks use a strength-3
# covering array instead of every combination (see README, "The template's tests").
EXHAUSTIVE_LIMIT = 256

Combination = dict[str, Any]


def enumerated_options() -> dict[str, list[Any]]:
    """Every boolean and choice variable, with its values (the default first)."""
    options: dict[str, list[Any]] = {}
    for name, value in COOKIECUTTER_JSON.items():
        if name.startswith("_"):
            continue
        if isinstance(value, bool):
            options[name] = [value, not value]
        elif isinstance(value, list):
            options[name] = list(value)
    return options


def code_options() -> dict[str, list[Any]]:
    return {k: v for k, v in enumerated_options().items() if k not in METADATA_OPTIONS}


def defaults() -> Combination:
    return {name: values[0] for name, values in enumerated_options().items()}


def _off_value(values: Sequence[Any]) -> Any:
    if isinstance(values[0], bool):
        return False
    return "none" if "none" in values else values[0]


def _on_value(values: Sequence[Any]) -> Any:
    """True; `both` where a choice has it (observability: metrics and traces); otherwise the
    first value but `none`."""
    if isinstance(values[0], bool):
        return True
    if "both" in values:
        return "both"
    return next(value for value in values if value != "none")


def all_off() -> Combination:
    return {**defaults(), **{k: _off_value(v) for k, v in code_options().items()}}


def all_on() -> Combination:
    return {**defaults(), **{k: _on_value(v) for k, v in code_options().items()}}


# Everything on is also run with each value of these options (each topology's own suite).
ALL_ON_VARIANTS = ("redis_topology",)


def landmarks() -> list[Combination]:
    rows = [all_on(), defaults(), all_off()]  # all on first: the heavy tests run there
    for name in ALL_ON_VARIANTS:
        rows.extend({**all_on(), name: value} for value in enumerated_options().get(name, []))
    return _unique(rows)


def _tuples(row: Mapping[str, Any], names: Sequence[str], strength: int) -> set[tuple[Any, ...]]:
    return {tuple((name, row[name]) for name in group) for group in itertools.combinations(names, strength)}


def covering_array(
    options: Mapping[str, Sequence[Any]],
    strength: int,
    seeds: Iterable[Mapping[str, Any]] = (),
    *,
    candidates: int = 30,
    random_seed: int = 20261126,
) -> list[Combination]:
    """Rows in which every `strength`-way combination of option values appears.

    Greedy (AETG-style) and deterministic: start from `seeds`, then repeatedly add the
    best of `candidates` rows that each begin from one still-uncovered tuple.
    """
    names = list(options)
    strength = min(strength, len(names))
    rng = random.Random(random_seed)
    uncovered = {
        tuple(zip(group, values, strict=True))
        for group in itertools.combinations(names, strength)
        for values in itertools.product(*(options[name] for name in group))
    }
    rows: list[Combination] = []
    for seed in seeds:
        seeded = {name: seed[name] for name in names}
        rows.append(seeded)
        uncovered -= _tuples(seeded, names, strength)
    ordered_uncovered = sorted(uncovered, key=repr)
    while uncovered:
        start = next(t for t in ordered_uncovered if t in uncovered)
        best_row: Combination | None = None
        best_gain = -1
        for _ in range(candidates):
            row: Combination = dict(start)
            rest = [name for name in names if name not in row]
            rng.shuffle(rest)
            for name in rest:
                scored = [
                    (_gain({**row, name: value}, names, strength, uncovered), rng.random(), index)
                    for index, value in enumerate(options[name])
                ]
                row[name] = options[name][max(scored)[2]]
            gain = len(_tuples(row, names, strength) & uncovered)
            if gain > best_gain:
                best_row, best_gain = row, gain
        assert best_row is not None
        rows.append(best_row)
        uncovered -= _tuples(best_row, names, strength)
    return rows


def _gain(partial: Mapping[str, Any], names: Sequence[str], strength: int, uncovered: set[Any]) -> int:
    assigned = [name for name in names if name in partial]
    return sum(
        1
        for group in itertools.combinations(assigned, min(strength, len(assigned)))
        if tuple((name, partial[name]) for name in group) in uncovered
    )


def exhaustive_size() -> int:
    return math.prod(len(values) for values in code_options().values())


def render_combinations() -> list[Combination]:
    """Code options combined (all of them, or a strength-3 covering array when there are
    too many), then each metadata option's other values against the defaults."""
    options = code_options()
    base = defaults()
    if exhaustive_size() <= EXHAUSTIVE_LIMIT:
        code_rows = [
            dict(zip(options, values, strict=True)) for values in itertools.product(*options.values())
        ]
    else:
        code_rows = covering_array(options, 3, seeds=landmarks())
    rows = [{**base, **row} for row in code_rows]
    for name in sorted(METADATA_OPTIONS & set(enumerated_options())):
        rows.extend({**base, name: value} for value in enumerated_options()[name][1:])
    return _unique(rows)


def generated_combinations() -> list[Combination]:
    """The pairwise-covering subset whose projects are installed and tested: every pair of
    values of the options their code and tests depend on, the others at the landmarks'
    values (defaults elsewhere)."""
    options = {name: values for name, values in code_options().items() if name not in NOT_RUN_OPTIONS}
    seeds = landmarks()
    rows = covering_array(options, 2, seeds=seeds)
    by_landmark = {json.dumps({k: seed[k] for k in options}, sort_keys=True): seed for seed in seeds}
    return _unique([by_landmark.get(json.dumps(row, sort_keys=True), {**defaults(), **row}) for row in rows])


def _unique(rows: Iterable[Combination]) -> list[Combination]:
    seen: set[str] = set()
    unique = []
    for row in rows:
        key = json.dumps(row, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique


def combination_id(combination: Mapping[str, Any]) -> str:
    """A short readable id: only the values that differ from the defaults."""
    base = defaults()
    changed = [
        f"{name}={str(value).lower()}"
        for name, value in combination.items()
        if name in base and value != base[name]
    ]
    return ",".join(changed) or "defaults"


def answers(combination: Mapping[str, Any]) -> dict[str, Any]:
    """Every variable as Cookiecutter sees it for these answers, including the derived
    `__` names of option interactions (rendered by Cookiecutter itself, not re-spelled here)."""
    context = {"cookiecutter": {**COOKIECUTTER_JSON, **combination}}
    return dict(prompt_for_config(context, no_input=True))


def params(combinations: Iterable[Combination], group: str = "") -> list[Any]:
    """pytest params of these combinations, named by combination_id; the tests of one
    combination run on one xdist worker (`group` keeps separate suites apart)."""
    return [
        pytest.param(c, id=combination_id(c), marks=pytest.mark.xdist_group(group + combination_id(c)))
        for c in combinations
    ]
