"""Metrics: the exposition's format and names, route labels, and who may read /metrics."""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client import CollectorRegistry, Histogram
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.observability.metrics import PREFIX, REDIS_BUCKETS, Metrics

from tests.redis_servers import free_port
from tests.scraped import Scrape, promtool_problems
from tests.service import PRODUCTION, Service, SettingsFactory, serve

pytestmark = pytest.mark.anyio

TOKEN = "t" * 32


async def scrape(service: Service, **headers: str) -> Scrape:
    response = await service.client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return Scrape(response.text)


async def test_the_exposition_parses_and_every_name_follows_the_conventions(
    memory_service: Service,
) -> None:
    await memory_service.client.get("/")
    families = (await scrape(memory_service)).families
    assert families
    for family in families:
        assert family.name.startswith(f"{PREFIX}_"), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name


async def test_promtool_check_metrics_passes(memory_service: Service) -> None:
    await memory_service.client.get("/")
    assert promtool_problems((await scrape(memory_service)).text) == ""


async def test_requests_are_labelled_by_route_template_never_by_raw_path(
    memory_service: Service,
) -> None:
{%- if cookiecutter.use_cache %}
    for item in ("first", "second"):
        await memory_service.client.get(f"/items/{item}")
    scraped = await scrape(memory_service)
    route = "/items/{item_id}"
    assert scraped.value("http_requests_total", method="GET", route=route, status="200") == 2
    assert "/items/first" not in scraped.text
{%- else %}
    for query in ("a", "b"):
        await memory_service.client.get(f"/?q={query}")
    scraped = await scrape(memory_service)
    assert scraped.value("http_requests_total", method="GET", route="/", status="200") == 2
{%- endif %}


def test_signals_written_once_a_second_read_as_if_observed_one_by_one() -> None:
    buffered = Metrics()
    direct = Histogram("direct_seconds", "", registry=CollectorRegistry(), buckets=REDIS_BUCKETS)
    values = [0.0, 0.0001, 0.00011, 0.25, 0.3, 1.0, 7.5]  # on bounds, between, past the last
    for value in values:
        buffered.observe("redis_pool_wait", value)
        direct.observe(value)
    buffered.flush()
    buffered.observe("redis_pool_wait", 0.0)  # after the flush: not written yet
    written = Scrape(buffered.exposition().decode())
    family = next(iter(direct.collect()))
    samples = [s for s in family.samples if not s.name.endswith("_created")]
    assert len(samples) == len(REDIS_BUCKETS) + 3  # the buckets, +Inf, count and sum
    for sample in samples:
        name = "redis_pool_wait_seconds" + sample.name.removeprefix("direct_seconds")
        assert written.value(name, **sample.labels) == sample.value, (name, sample.labels)


async def test_unknown_paths_share_one_label(memory_service: Service) -> None:
    for path in ("/nothing/here", "/nor/here"):
        await memory_service.client.get(path)
    scraped = await scrape(memory_service)
    assert scraped.value("http_requests_total", method="GET", route="unmatched", status="404") == 2
    assert "/nothing/here" not in scraped.text


async def test_unknown_methods_share_one_label(memory_service: Service) -> None:
    await memory_service.client.request("BREW", "/")
    scraped = await scrape(memory_service)
    assert scraped.total("http_requests_total", method="other") == 1
    assert "BREW" not in scraped.text


async def test_health_probes_and_scrapes_are_not_counted(memory_service: Service) -> None:
    await memory_service.client.get("/health/live")
    await memory_service.client.get("/health/ready")
    await scrape(memory_service)
    scraped = await scrape(memory_service)
    assert scraped.total("http_requests_total") == 0


async def test_without_a_token_metrics_are_refused_when_one_is_set(
    make_settings: SettingsFactory,
) -> None:
    async with serve(make_settings(metrics_token=TOKEN)) as service:
        response = await service.client.get("/metrics")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


async def test_a_wrong_token_is_refused(make_settings: SettingsFactory) -> None:
    async with serve(make_settings(metrics_token=TOKEN)) as service:
        response = await service.client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


async def test_the_right_token_is_answered(make_settings: SettingsFactory) -> None:
    async with serve(make_settings(metrics_token=TOKEN)) as service:
        await scrape(service, Authorization=f"Bearer {TOKEN}")


async def test_with_a_port_of_their_own_metrics_are_not_on_the_service_port(
    make_settings: SettingsFactory,
) -> None:
    async with serve(make_settings(metrics_port=free_port())) as service:
        response = await service.client.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_the_metrics_port_serves_metrics_and_nothing_else(
    make_settings: SettingsFactory,
) -> None:
    port = free_port()
    async with serve(make_settings(metrics_port=port)) as service:
        await service.client.get("/")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            metrics = await http.get("/metrics")
            elsewhere = await http.get("/")
            posted = await http.post("/metrics")
    assert metrics.status_code == 200
    scraped = Scrape(metrics.text)
    assert scraped.value("http_requests_total", method="GET", route="/", status="200") == 1
    assert (elsewhere.status_code, elsewhere.json()["error"]["code"]) == (404, "not_found")
    assert posted.status_code == 405


async def test_the_metrics_port_asks_for_the_token_when_one_is_set(
    make_settings: SettingsFactory,
) -> None:
    port = free_port()
    async with (
        serve(make_settings(metrics_port=port, metrics_token=TOKEN)),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        refused = await http.get("/metrics")
        answered = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert refused.status_code == 401
    assert answered.status_code == 200


async def test_a_metrics_port_in_use_is_reported_in_one_line_and_the_service_still_serves(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with serve(make_settings(metrics_port=port)) as service:
            assert (await service.client.get("/")).status_code == 200
    lines = [r.getMessage() for r in caplog.records if "METRICS_PORT" in r.getMessage()]
    assert lines == [
        f"METRICS_PORT={port}: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "this worker serves no /metrics"
    ]


def test_production_refuses_metrics_without_a_token_on_the_service_port(
    make_settings: SettingsFactory,
) -> None:
    values = {**PRODUCTION, "redis_url": "redis://localhost:6379/0", "metrics_token": None}
    with pytest.raises(ValidationError, match=r"METRICS_PORT .* or METRICS_TOKEN"):
        make_settings(**values, metrics_port=0)
    make_settings(**values, metrics_port=9464)  # a port of their own is fine


def test_a_short_metrics_token_is_refused(make_settings: SettingsFactory) -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        make_settings(metrics_token="short")
