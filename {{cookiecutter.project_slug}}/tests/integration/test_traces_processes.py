"""Traces from the service as deployed, to a collector of our own that decodes OTLP/HTTP:
what arrives with an endpoint, and what happens without one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.processes import server_process
from tests.service import SettingsFactory
from tests.traced import otlp_collector

pytestmark = pytest.mark.anyio

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
# Batches leave every 100 ms rather than every 5 s.
QUICK_BATCHES = {"OTEL_BSP_SCHEDULE_DELAY": "100"}


async def test_request_spans_reach_an_otlp_collector(real_settings: SettingsFactory) -> None:
    settings = real_settings()
    with otlp_collector() as collector:
        environment = {**QUICK_BATCHES, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint}
        async with server_process(settings, environment=environment) as server:
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                response = await http.get("/", headers={"traceparent": TRACEPARENT})
                assert response.status_code == 200
            span = await asyncio.to_thread(collector.wait_for, "GET /")
    assert span.trace_id == TRACE_ID
    assert span.parent_span_id == TRACEPARENT.split("-")[2]
    assert span.attributes["http.route"] == "/"
    assert span.attributes["http.response.status_code"] == 200
    assert span.resource["service.name"] == settings.otel_service_name
    # Whatever Redis work the request did is inside it.
    inside = [other for other in collector.spans if other.trace_id == TRACE_ID and other != span]
    assert all(other.parent_span_id == span.span_id for other in inside)


async def test_spans_still_waiting_for_their_batch_are_sent_when_the_service_stops(
    real_settings: SettingsFactory,
) -> None:
    settings = real_settings()
    with otlp_collector() as collector:
        environment = {
            "OTEL_BSP_SCHEDULE_DELAY": "600000",  # no batch would leave for ten minutes
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        }
        async with server_process(settings, environment=environment) as server:
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                response = await http.get("/", headers={"traceparent": TRACEPARENT})
                assert response.status_code == 200
            assert collector.spans == []
        # The process has stopped.
        assert [span.trace_id for span in collector.spans if span.name == "GET /"] == [TRACE_ID]


async def test_with_the_exporter_off_nothing_reaches_the_collector(
    real_settings: SettingsFactory,
) -> None:
    settings = real_settings()
    with otlp_collector() as collector:
        environment = {
            **QUICK_BATCHES,
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_TRACES_EXPORTER": "none",
        }
        async with server_process(settings, environment=environment) as server:
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                for _ in range(5):
                    assert (await http.get("/")).status_code == 200
            await asyncio.sleep(0.5)  # several batch intervals
        # The process has stopped: a provider would have sent its last batch by now.
    assert collector.posts == 0


async def test_with_no_endpoint_nothing_is_logged_as_an_error(
    real_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = real_settings()
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:
        async with (
            server_process(settings, stderr=stderr) as server,
            httpx.AsyncClient(base_url=server.base_url) as http,
        ):
            for _ in range(5):
                assert (await http.get("/")).status_code == 200
    lines = log.read_text().splitlines()
    assert not [line for line in lines if "ERROR" in line or "Traceback" in line], lines
    assert not [line for line in lines if "opentelemetry" in line.lower()], lines
