"""Traces against a real Redis, spans kept in memory: each Redis command a request makes is a
client span inside the request's span, a Lua script named after its purpose (a real
collector, and several processes: test_traces_processes.py)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.service import SettingsFactory, serve
from tests.traced import children_of, only, traced_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def with_a_redis_route(app: FastAPI) -> FastAPI:
    @app.get("/noted/{name}")
    async def noted(name: str, request: Request) -> dict[str, str]:
        redis = request.app.state.redis
        key = f"{request.app.state.settings.redis_key_prefix}:noted:{name}"
        await redis.set(key, name, ex=60)
        return {"noted": (await redis.get(key)).decode()}

    return app


async def test_each_redis_command_is_a_client_span_inside_the_request_span(
    real_settings: SettingsFactory, exporter: InMemorySpanExporter
) -> None:
    settings = real_settings()
    async with serve(settings, with_a_redis_route(traced_app(settings, exporter))) as service:
        assert (await service.client.get("/noted/a")).json() == {"noted": "a"}
    spans = list(exporter.get_finished_spans())
    request = only(spans, "GET /noted/{name}")
    commands = [span for span in children_of(spans, request) if span.kind is SpanKind.CLIENT]
    assert {"SET", "GET"} <= {span.name for span in commands}
    get = only(commands, "GET")
    assert get.attributes is not None
    assert get.attributes["db.system.name"] == "redis"
    assert get.attributes["db.operation.name"] == "GET"
    times = [request.start_time, get.start_time, get.end_time, request.end_time]
    known = [time for time in times if time is not None]
    assert len(known) == len(times)
    assert known == sorted(known)


async def test_redis_commands_outside_a_request_make_no_spans(
    real_settings: SettingsFactory, exporter: InMemorySpanExporter
) -> None:
    settings = real_settings()
    async with serve(settings, traced_app(settings, exporter)) as service:
        await service.redis.ping()
        assert (await service.client.get("/health/ready")).status_code == 200  # untraced
    assert exporter.get_finished_spans() == ()
{%- if cookiecutter.use_cache %}


async def test_a_cache_lookup_is_a_span_named_after_its_script(
    real_settings: SettingsFactory, exporter: InMemorySpanExporter
) -> None:
    settings = real_settings(demo_compute_delay_ms=0)
    async with serve(settings, traced_app(settings, exporter)) as service:
        assert (await service.client.get("/items/traced")).headers["X-Cache"] == "MISS"
        exporter.clear()
        assert (await service.client.get("/items/traced")).headers["X-Cache"] == "HIT"
    spans = list(exporter.get_finished_spans())
    # The hit is answered before routing, and still named by its route.
    request = only(spans, "GET /items/{item_id}")
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/items/{item_id}"
    lookup = only(children_of(spans, request), "cache.lookup")
    assert lookup.kind is SpanKind.CLIENT
    assert lookup.attributes is not None
    assert lookup.attributes["db.operation.name"] == "EVALSHA"
    assert lookup.attributes["db.stored_procedure.name"] == "cache.lookup"
{%- endif %}
{%- if cookiecutter.rate_limiting != "none" %}


async def test_a_rate_limit_decision_is_a_span_named_after_its_script(
    real_settings: SettingsFactory, exporter: InMemorySpanExporter
) -> None:
    settings = real_settings()
    async with serve(settings, traced_app(settings, exporter)) as service:
        assert (await service.client.get("/")).status_code == 200
    spans = list(exporter.get_finished_spans())
    request = only(spans, "GET /")
    names = [span.name for span in children_of(spans, request)]
    scripts = [name for name in names if name.startswith("ratelimit.")]
    assert scripts == ["ratelimit.{{ cookiecutter.rate_limiting }}"], names
{%- endif %}
