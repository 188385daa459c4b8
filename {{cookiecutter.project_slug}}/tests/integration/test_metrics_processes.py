"""Metrics of several worker processes: a scrape, whichever worker answers it, adds them up."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from {{ cookiecutter.package_name }}.observability.metrics import FLUSH_SECONDS

from tests.processes import server_process
from tests.scraped import Scrape
from tests.service import SettingsFactory

pytestmark = pytest.mark.anyio


async def served_root(http: httpx.AsyncClient) -> float:
    """How many GET / were answered with 200, as one scrape says."""
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    return Scrape(response.text).value("http_requests_total", method="GET", route="/", status="200")


async def test_the_counts_of_two_worker_processes_add_up(
    real_settings: SettingsFactory, tmp_path: Path
) -> None:
    """uvicorn --workers 2 with PROMETHEUS_MULTIPROC_DIR: a scrape, whichever worker answers
    it, counts the requests both served."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    settings = real_settings(rate_limit_default="1000000/minute")
    environment = {"PROMETHEUS_MULTIPROC_DIR": str(directory)}
    sent = 0
    async with server_process(settings, "--workers", "2", environment=environment) as server:
        # A new connection per request, so the kernel spreads them over both workers.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.base_url, limits=limits) as http:
            for _ in range(10):
                answers = await asyncio.gather(*(http.get("/") for _ in range(20)))
                assert {answer.status_code for answer in answers} == {200}
                sent += len(answers)
                await asyncio.sleep(1.5 * FLUSH_SECONDS)  # each worker writes its counts
                if len(list(directory.glob("counter_*.db"))) == 2:
                    break
            assert len(list(directory.glob("counter_*.db"))) == 2, "one worker served everything"
            # Each worker writes its figures once a second (and before a scrape it answers).
            for _ in range(40):  # up to 10 flush intervals
                if await served_root(http) == sent:
                    break
                await asyncio.sleep(FLUSH_SECONDS / 4)
            counts = [await served_root(http) for _ in range(4)]  # whichever worker answers
    assert counts == [sent] * 4
