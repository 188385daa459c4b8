"""Schemathesis run in-process the way its CLI runs (every check, every phase), with the
outcome gathered into one summary that a test asserts on and prints."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
{%- if cookiecutter.use_sessions %}
from http.cookies import SimpleCookie
{%- endif %}
from typing import Any

import schemathesis
{%- if cookiecutter.use_sessions %}
from schemathesis import AuthContext, Case, engine
{%- else %}
from schemathesis import engine
{%- endif %}
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events
{%- if cookiecutter.use_sessions %}
from schemathesis.python import asgi
{%- endif %}

# Enough cases to reach every branch of the demo routes, few enough for the suite's budget;
# no example database left in the project directory.
CONFIG: dict[str, Any] = {
    "generation": {"max-examples": 8, "database": "none"},
    "phases": {"stateful": {"max-steps": 8}},
{%- if cookiecutter.use_realtime %}
    # An event stream never ends by itself: each answer is what it sent within 0.1 s.
    "operations": [{"include-path": "/realtime/sse", "request-timeout": 0.1}],
{%- endif %}
}

# The app's settings for the run, beside the test's own Redis.
{%- if cookiecutter.use_cache or cookiecutter.use_sessions or cookiecutter.rate_limiting != "none" %}
SETTINGS: dict[str, Any] = {
{%- if cookiecutter.use_cache %}
    "demo_compute_delay_ms": 0,
{%- endif %}
{%- if cookiecutter.use_sessions %}
    "password_hash_cost": 10,  # the run logs in again after each of its own logouts
{%- endif %}
{%- if cookiecutter.rate_limiting != "none" %}
    # Generous: one logged-in user makes most of the generated requests. The limiter still
    # answers each of them, and its headers are checked against the contract.
    "rate_limit_default": "100000/minute",
{%- endif %}
}
{%- else %}
SETTINGS: dict[str, Any] = {}
{%- endif %}
{%- if cookiecutter.use_sessions %}

USER = {"username": "contract-user", "password": "correct horse battery staple"}
{%- endif %}


class DistinctClients:
    """The app, seen by each request as coming from a new client address, so that limits
    kept per address (the login's) do not refuse the generated requests."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.numbers = itertools.count(1)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            n = next(self.numbers)
            scope = {**scope, "client": (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 50000)}
        await self.app(scope, receive, send)


def load(app: Any) -> schemathesis.BaseSchema:
    """The app's OpenAPI, ready to run{% if cookiecutter.use_sessions %} as a logged-in user{% endif %}."""
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", DistinctClients(app), config=SchemathesisConfig.from_dict(CONFIG)
    )
{%- if cookiecutter.use_sessions %}
    schema.auth()(LoggedIn)
{%- endif %}
    return schema
{%- if cookiecutter.use_sessions %}


class LoggedIn:
    """A session of a user registered for the run, with its CSRF token. Schemathesis asks
    again after a 401, when the run's own logout calls have ended the session."""

    def get(self, case: Case[Any], context: AuthContext) -> dict[str, str]:
        assert context.app is not None
        client = asgi.get_client(context.app)
        client.post("http://testserver/auth/register", json=USER)
        login = client.post("http://testserver/auth/login", json=USER)
        assert login.status_code == 200, login.text
        cookie = SimpleCookie(login.headers["set-cookie"])
        session = next(iter(cookie.values()))
        return {
            "cookie": f"{session.key}={session.value}",
            "x-csrf-token": login.json()["csrf_token"],
        }

    def set(self, case: Case[Any], data: dict[str, str], context: AuthContext) -> None:
        case.headers.update(data)
{%- endif %}


@dataclass
class Summary:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    phases: Counter[str] = field(default_factory=Counter)
    tested: set[str] = field(default_factory=set)
    skipped: dict[str, set[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    links: int = 0  # transitions between operations, which the stateful phase follows
    stop_reason: str = ""

    def __str__(self) -> str:
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        phases = ", ".join(f"{name}: {n}" for name, n in sorted(self.phases.items()))
        skips = [f"skipped in {phase}: {sorted(labels)}" for phase, labels in self.skipped.items()]
        return "\n".join([
            f"{self.cases} cases, {len(self.tested)} operations tested, scenarios by phase "
            f"({phases}), {self.links} links; answers ({statuses}); {len(self.failures)} failures, "
            f"{len(self.errors)} errors; stopped: {self.stop_reason}",
            *skips,
            *self.failures,
            *self.errors,
        ])  # fmt: skip


def _failures(event: events.ScenarioFinished) -> Iterator[str]:
    for case_id, checks in event.recorder.checks.items():
        for check in checks:
            if check.status == Status.FAILURE:
                response = event.recorder.find_response(case_id=case_id)
                answer = f"{response.status_code} {response.content[:300]!r}" if response else "-"
                detail = str(check.failure_info.failure) if check.failure_info else ""
                yield f"FAILURE {event.label} [{check.name}] {detail} -> {answer}"


def _record(summary: Summary, event: events.ScenarioFinished) -> None:
    summary.phases[event.phase.value] += 1
    summary.cases += len(event.recorder.cases)
    for interaction in event.recorder.interactions.values():
        if interaction.response is not None:
            summary.statuses[interaction.response.status_code] += 1
    if event.label and event.status == Status.SKIP:
        summary.skipped.setdefault(event.phase.value, set()).add(event.label)
    elif event.label:
        summary.tested.add(event.label)
    summary.failures.extend(_failures(event))


def run(schema: schemathesis.BaseSchema) -> Summary:
    summary = Summary()
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            _record(summary, event)
        elif isinstance(event, events.PhaseStarted) and event.payload is not None:
            summary.links = event.payload.transitions_total
        elif isinstance(event, events.NonFatalError):
            summary.errors.append(f"ERROR {event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            summary.errors.append(f"FATAL {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            summary.stop_reason = event.stop_reason.value
    return summary


def operations(schema: schemathesis.BaseSchema) -> dict[str, bool]:
    """Every operation's label, and whether it takes any input (parameters or a body)."""
    found = {}
    for path, methods in schema.raw_schema["paths"].items():
        for method, operation in methods.items():
            takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
            found[f"{method.upper()} {path}"] = takes_input
    return found
