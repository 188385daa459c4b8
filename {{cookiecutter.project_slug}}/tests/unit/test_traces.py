"""Traces in-process, spans kept in memory: what a request's span says, which requests have
none, what log lines carry, and when nothing is set up at all (with a real Redis and a real
collector: tests/integration/test_traces.py)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.observability.traces import SpanRoute, exporting_provider
from {{ cookiecutter.package_name }}.settings import Settings

from tests.processes import PROJECT
from tests.service import SettingsFactory, logged_while_serving, serve
from tests.traced import server_span, traced_app

pytestmark = pytest.mark.anyio

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def with_routes(app: FastAPI) -> FastAPI:
    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        logging.getLogger("tests.traces").warning("serving")
        return {"thing": thing_id}

    return app


@pytest.mark.parametrize(
    "variables",
    [
        {},
        {"otel_exporter_otlp_endpoint": ""},
        {"otel_exporter_otlp_endpoint": "http://collector:4318", "otel_traces_exporter": "none"},
        {"otel_exporter_otlp_endpoint": "http://collector:4318", "otel_sdk_disabled": True},
    ],
    ids=["no-endpoint", "empty-endpoint", "exporter-none", "sdk-disabled"],
)
def test_without_an_endpoint_nothing_is_set_up(
    make_settings: SettingsFactory, variables: dict[str, object]
) -> None:
    assert exporting_provider(make_settings(**variables)) is None


def test_traces_go_to_the_base_endpoint_plus_v1_traces(make_settings: SettingsFactory) -> None:
    settings = make_settings(otel_exporter_otlp_endpoint="http://collector:4318/")
    assert settings.traces_endpoint == "http://collector:4318/v1/traces"


def test_a_traces_endpoint_is_used_as_it_is(make_settings: SettingsFactory) -> None:
    settings = make_settings(
        otel_exporter_otlp_endpoint="http://collector:4318",
        otel_exporter_otlp_traces_endpoint="https://traces.example/ingest",
    )
    assert settings.traces_endpoint == "https://traces.example/ingest"


async def test_without_an_endpoint_requests_are_served_and_nothing_is_logged(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings()
    with caplog.at_level(logging.WARNING):
        async with serve(settings, with_routes(create_app(settings))) as service:
            caplog.clear()
            for _ in range(3):
                assert (await service.client.get("/things/1")).status_code == 200
    assert [record.getMessage() for record in caplog.records] == ["serving"] * 3


def test_the_services_provider_is_the_process_global_one() -> None:
    """So `trace.get_tracer(__name__)` in the service's own code adds spans to its traces (a
    process of its own: the global provider can be set once only)."""
    code = (
        "from opentelemetry import trace\n"
        "from {{ cookiecutter.package_name }}.main import create_app\n"
        "from tests.service import settings_for_test\n"
        "app = create_app(settings_for_test(otel_exporter_otlp_endpoint='http://127.0.0.1:9'))\n"
        "print(type(trace.get_tracer_provider()).__module__)\n"
    )
    python_path = os.pathsep.join([str(PROJECT / "src"), str(PROJECT)])
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": python_path},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "opentelemetry.sdk.trace"


def middleware_of(app: FastAPI) -> list[type]:
    """The classes of the app's built middleware stack, outermost first."""
    found: list[type] = []
    layer = app.middleware_stack
    while layer is not None:
        found.append(type(layer))
        layer = getattr(layer, "app", None)
    return found


async def test_without_an_endpoint_no_tracing_code_runs_per_request(
    make_settings: SettingsFactory, exporter: InMemorySpanExporter
) -> None:
    settings = make_settings()
    untraced, traced = create_app(settings), traced_app(settings, exporter)
    for app in (untraced, traced):
        async with serve(settings, app) as service:
            await service.client.get("/")
    assert SpanRoute not in middleware_of(untraced)
    assert SpanRoute in middleware_of(traced)


async def test_a_request_span_is_named_by_its_route_template(
    make_settings: SettingsFactory, exporter: InMemorySpanExporter
) -> None:
    settings = make_settings()
    async with serve(settings, with_routes(traced_app(settings, exporter))) as service:
        assert (await service.client.get("/things/42?colour=red")).status_code == 200
    span = server_span(exporter)
    assert span.name == "GET /things/{thing_id}"
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/things/{thing_id}"
    assert span.attributes["url.path"] == "/things/42"
    assert span.attributes["http.response.status_code"] == 200


async def test_an_unknown_path_has_a_span_named_by_its_method_only(
    make_settings: SettingsFactory, exporter: InMemorySpanExporter
) -> None:
    settings = make_settings()
    async with serve(settings, traced_app(settings, exporter)) as service:
        assert (await service.client.get("/no/such/thing")).status_code == 404
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET"
    assert span.attributes is not None
    assert "http.route" not in span.attributes


async def test_health_checks_have_no_spans(
    make_settings: SettingsFactory, exporter: InMemorySpanExporter
) -> None:
    settings = make_settings()
    async with serve(settings, traced_app(settings, exporter)) as service:
        assert (await service.client.get("/health/live")).status_code == 200
        assert (await service.client.get("/health/ready")).status_code == 200
    assert exporter.get_finished_spans() == ()


{%- if cookiecutter.__metrics %}


async def test_scrapes_have_no_spans(
    make_settings: SettingsFactory, exporter: InMemorySpanExporter
) -> None:
    settings = make_settings()  # metrics on the service's port (METRICS_PORT=0)
    async with serve(settings, traced_app(settings, exporter)) as service:
        assert (await service.client.get("/metrics")).status_code == 200
    assert exporter.get_finished_spans() == ()
{%- endif %}


async def test_an_incoming_traceparent_is_continued(
    make_settings: SettingsFactory, exporter: InMemorySpanExporter
) -> None:
    settings = make_settings()
    async with serve(settings, with_routes(traced_app(settings, exporter))) as service:
        await service.client.get("/things/1", headers={"traceparent": TRACEPARENT})
    span = server_span(exporter)
    assert trace.format_trace_id(span.context.trace_id) == TRACEPARENT.split("-")[1]
    assert span.parent is not None
    assert trace.format_span_id(span.parent.span_id) == TRACEPARENT.split("-")[2]


async def logged_while_traced(
    settings: Settings,
    exporter: InMemorySpanExporter,
    capfd: pytest.CaptureFixture[str],
    request_id: str,
) -> list[str]:
    """The stderr lines of one traced request with this id, continuing TRACEPARENT."""
    app = with_routes(traced_app(settings, exporter))
    headers = {"traceparent": TRACEPARENT, "X-Request-ID": request_id}
    return await logged_while_serving(app, capfd, "/things/1", headers)


async def test_json_log_lines_carry_the_request_id_and_the_trace_id(
    make_settings: SettingsFactory,
    exporter: InMemorySpanExporter,
    capfd: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(log_json=True, log_level="INFO")
    logged = await logged_while_traced(settings, exporter, capfd, "req-1")
    lines = [json.loads(line) for line in logged]
    (served,) = [line for line in lines if line["message"] == "serving"]
    span = server_span(exporter)
    assert served["request_id"] == "req-1"
    assert served["trace_id"] == TRACEPARENT.split("-")[1]
    assert served["span_id"] == trace.format_span_id(span.context.span_id)


async def test_text_log_lines_carry_the_request_id_and_the_trace_id(
    make_settings: SettingsFactory,
    exporter: InMemorySpanExporter,
    capfd: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(log_json=False, log_level="INFO")
    lines = await logged_while_traced(settings, exporter, capfd, "req-2")
    (served,) = [line for line in lines if line.endswith("serving")]
    assert f"[req-2 trace={TRACEPARENT.split('-')[1]}]" in served
