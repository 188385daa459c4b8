"""The OpenAPI document tells the truth. Schemathesis drives every operation of the app
in-process, on the real Redis under test, with every check and every phase: examples,
coverage, fuzzing, then sequences of calls (the stateful phase){% if cookiecutter.use_sessions %}, as a logged-in user who
sends the session's CSRF token{% endif %}."""

from __future__ import annotations

from {{ cookiecutter.package_name }}.main import create_app

from tests import api_contract
from tests.service import SettingsFactory


def test_every_operation_answers_as_the_openapi_says(real_settings: SettingsFactory) -> None:
    schema = api_contract.load(create_app(real_settings(**api_contract.SETTINGS)))
    operations = api_contract.operations(schema)

    summary = api_contract.run(schema)

    print(summary)
    assert summary.stop_reason == "completed", summary
    assert not summary.failures, summary
    assert not summary.errors, summary
    assert summary.phases.keys() >= {"examples", "coverage", "fuzzing"}, summary
    # Sequences of calls follow the links between operations (the ones that share values).
    assert ("stateful" in summary.phases) == (summary.links > 0), summary
    assert summary.tested == operations.keys(), summary
    # The examples phase has nothing to draw from for an operation without inputs; every
    # operation with inputs has examples in the contract.
    without_input = {label for label, takes_input in operations.items() if not takes_input}
    assert summary.skipped.get("examples", set()) <= without_input, summary
    assert summary.skipped.keys() <= {"examples"}, summary
