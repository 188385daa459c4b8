"""The drift canary: what the newest releases change, and whether the generated projects
still pass on them.

Re-locks the reference project (reference/, the everything-on render) with `uv lock
--upgrade`, reports every package whose version moved, then renders everything on for each
Redis topology, gives it the upgraded lock and runs the project's own checks on it, exactly
as its owner would: `make install lint typecheck test`. The shipped lock is left alone
unless `--write` is given and every check passed; `make test` keeps testing the shipped one.

    make upgrade-check                 # report only (build/upgrade-check/report.md)
    make upgrade-check ARGS=--write    # and, when green, update reference/uv.lock

Exit status: 0 when every check passed on the upgraded lock, 1 when one failed, 2 when the
upgrade itself could not be resolved.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.combos import TEMPLATE_DIR, all_on, enumerated_options
from tests.locks import REFERENCE_DIR, SHIPPED_LOCK, pins
from tests.rendering import clean_environment, failed_tests, render
from tests.tools import BIN, run, tool

SCRATCH = TEMPLATE_DIR / "build" / "upgrade-check"
# The project's own checks, in the order its owner runs them; each is one make target.
CHECKS = ("install", "lint", "typecheck", "test")
# As in the template's suite: a missing redis-server, promtool or browser fails, never skips.
REQUIRED = {"REQUIRE_REDIS": "1", "REQUIRE_PROMTOOL": "1", "REQUIRE_BROWSER": "1"}
OUTPUT_TAIL = 60  # lines of a failed check's output in the report


@dataclass(frozen=True)
class Drift:
    changed: list[tuple[str, str, str]]  # (package, old, new)
    added: list[tuple[str, str]]
    removed: list[tuple[str, str]]


@dataclass(frozen=True)
class Outcome:
    topology: str
    check: str
    passed: bool
    seconds: float
    output: str


def drift(old: Path, new: Path) -> Drift:
    before, after = dict(pins(old)), dict(pins(new))
    return Drift(
        changed=sorted(
            (name, before[name], after[name])
            for name in before.keys() & after.keys()
            if before[name] != after[name]
        ),
        added=sorted((name, after[name]) for name in after.keys() - before.keys()),
        removed=sorted((name, before[name]) for name in before.keys() - after.keys()),
    )


def upgraded_reference(scratch: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A copy of reference/ re-locked with --upgrade (online)."""
    copy = scratch / "reference"
    shutil.copytree(REFERENCE_DIR, copy)
    environment = clean_environment()
    environment.pop("UV_OFFLINE", None)
    result = run(tool("uv"), "lock", "--upgrade", cwd=copy, env=environment, timeout=600)
    return copy / "uv.lock", result


def check_topology(topology: str, lock: Path, scratch: Path) -> list[Outcome]:
    """Render everything on for this topology, give it the upgraded lock, run its checks."""
    project = render({**all_on(), "redis_topology": topology}, scratch / topology)
    shutil.copyfile(lock, project / "uv.lock")
    outcomes: list[Outcome] = []
    uv = tool("uv")
    steps: list[tuple[str, Sequence[str]]] = [("lock", (uv, "lock"))]
    steps += [(check, ("make", check, f"UV={uv}")) for check in CHECKS]
    for check, command in steps:
        started = time.monotonic()
        result = run(*command, cwd=project, env=clean_environment(REQUIRED), timeout=3600)
        outcome = Outcome(
            topology,
            check,
            result.returncode == 0,
            time.monotonic() - started,
            (result.stdout + result.stderr).strip(),
        )
        outcomes.append(outcome)
        (scratch / f"{topology}-{check}.log").write_text(outcome.output + "\n")
        print(
            f"  {topology:<10} {check:<10} {'ok' if outcome.passed else 'FAILED'} ({outcome.seconds:.0f} s)"
        )
        if not outcome.passed:
            break  # the later checks need this one
    return outcomes


def summary(output: str) -> str:
    """What a reader needs first: pytest's failed tests and its closing line when it ran,
    else the output's last lines (the whole of it is in the check's log file)."""
    lines = output.splitlines()
    failures = failed_tests(output)
    closing = [line for line in lines[-3:] if re.search(r"\d+ (failed|passed|error)", line)]
    return "\n".join(failures + closing if failures else lines[-OUTPUT_TAIL:])


def report(changes: Drift, outcomes: Sequence[Outcome], lock_error: str = "") -> str:
    lines = ["# Upgrade check", ""]
    if lock_error:
        return "\n".join([*lines, "`uv lock --upgrade` failed:", "", "```", lock_error, "```", ""])
    total = len(changes.changed) + len(changes.added) + len(changes.removed)
    lines.append(f"{total} change(s) since the shipped lock (reference/uv.lock).")
    if total:
        lines += ["", "| package | shipped | newest |", "|---|---|---|"]
        lines += [f"| {name} | {old} | {new} |" for name, old, new in changes.changed]
        lines += [f"| {name} | (none) | {new} |" for name, new in changes.added]
        lines += [f"| {name} | {old} | (removed) |" for name, old in changes.removed]
    failed = [outcome for outcome in outcomes if not outcome.passed]
    lines += ["", "## The generated projects on the newest releases", ""]
    lines += ["| topology | check | result | time |", "|---|---|---|---|"]
    lines += [
        f"| {o.topology} | {o.check} | {'passed' if o.passed else '**failed**'} | {o.seconds:.0f} s |"
        for o in outcomes
    ]
    for outcome in failed:
        lines += [
            "",
            f"### {outcome.topology}: `make {outcome.check}` failed",
            "",
            "```",
            summary(outcome.output),
            "```",
        ]
    lines += ["", "Each check's whole output: `build/upgrade-check/<topology>-<check>.log`."]
    lines += [
        "",
        "Green: the upgraded lock can be shipped."
        if not failed
        else "Red: the shipped lock stays; fix the template for these releases first.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--write",
        action="store_true",
        help="when every check passes, copy the upgraded lock to reference/uv.lock",
    )
    topologies = enumerated_options()["redis_topology"]
    parser.add_argument(
        "--topology",
        action="append",
        choices=topologies,
        help="check only this topology (repeatable; default: every one)",
    )
    arguments = parser.parse_args(argv)
    # The hook finds uv on PATH: the template's own first, as in the template's suite.
    os.environ["PATH"] = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    lock, result = upgraded_reference(SCRATCH)
    report_file = SCRATCH / "report.md"
    if result.returncode != 0:
        report_file.write_text(report(Drift([], [], []), [], lock_error=result.stderr.strip()))
        print(report_file.read_text())
        return 2
    changes = drift(SHIPPED_LOCK, lock)
    outcomes: list[Outcome] = []
    for topology in arguments.topology or topologies:
        outcomes += check_topology(topology, lock, SCRATCH)
    report_file.write_text(report(changes, outcomes))
    print(report_file.read_text())
    print(f"(written to {report_file.relative_to(TEMPLATE_DIR)})")
    green = all(outcome.passed for outcome in outcomes)
    if green and arguments.write:
        shutil.copyfile(lock, SHIPPED_LOCK)
        print("reference/uv.lock updated: commit it with the report above")
    return 0 if green else 1


if __name__ == "__main__":
    sys.exit(main())
