"""Request ids: kept when safe, replaced otherwise, echoed, and carried by every log line."""

from __future__ import annotations

import json
import logging
import re

import pytest
from fastapi import FastAPI

from {{ cookiecutter.package_name }}.log import configure_logging
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.request_id import HEADER
from {{ cookiecutter.package_name }}.settings import Settings

from tests.service import Service, SettingsFactory, logged_while_serving

pytestmark = pytest.mark.anyio

NEW_ID = re.compile(r"[0-9a-f]{32}")


def with_logging_route(app: FastAPI) -> FastAPI:
    """The app plus a route that logs one line while it serves a request."""

    @app.get("/logs-a-line")
    async def logs_a_line() -> dict[str, str]:
        logging.getLogger("tests.request_id").warning("serving")
        return {}

    return app


async def test_a_safe_incoming_request_id_is_kept_and_echoed(memory_service: Service) -> None:
    for incoming in ("3f2b0c1e-9d4a-4e55-8f0b-6a3c2d1e0f9a", "01HZX3K5N8Q2R7T9V0W4Y6A1B3", "a.b:c"):
        response = await memory_service.client.get("/", headers={HEADER: incoming})
        assert response.headers[HEADER] == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        "x" * 129,  # oversized
        "",  # empty
        "has space",
        'quote"d',
        "new\\nline",
        "<script>",
        "semi;colon",
        "caf\u00e9",
    ],
    ids=["oversized", "empty", "space", "quote", "backslash", "angle", "semicolon", "non-ascii"],
)
async def test_a_malformed_or_oversized_request_id_is_replaced_never_echoed(
    memory_service: Service, incoming: str
) -> None:
    response = await memory_service.client.get("/", headers=[(HEADER.encode(), incoming.encode())])
    assert response.status_code == 200
    assert NEW_ID.fullmatch(response.headers[HEADER])


async def test_a_request_without_an_id_gets_a_new_one_every_time(memory_service: Service) -> None:
    first = (await memory_service.client.get("/")).headers[HEADER]
    second = (await memory_service.client.get("/")).headers[HEADER]
    assert NEW_ID.fullmatch(first)
    assert NEW_ID.fullmatch(second)
    assert first != second


async def test_error_answers_carry_the_request_id_too(memory_service: Service) -> None:
    response = await memory_service.client.get("/no/such/route", headers={HEADER: "req-404"})
    assert response.status_code == 404
    assert response.headers[HEADER] == "req-404"


async def logged_with_id(
    settings: Settings, capfd: pytest.CaptureFixture[str], request_id: str
) -> list[str]:
    """The stderr lines the app writes while it serves one request with this id."""
    app = with_logging_route(create_app(settings))
    return await logged_while_serving(app, capfd, "/logs-a-line", {HEADER: request_id})


async def test_json_log_lines_of_a_request_carry_its_id(
    make_settings: SettingsFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(log_json=True, log_level="INFO")
    lines = [json.loads(line) for line in await logged_with_id(settings, capfd, "req-j")]
    served = [line for line in lines if line["message"] == "serving"]
    assert [line["request_id"] for line in served] == ["req-j"]


async def test_text_log_lines_of_a_request_carry_its_id(
    make_settings: SettingsFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(log_json=False, log_level="INFO")
    lines = await logged_with_id(settings, capfd, "req-t")
    served = [line for line in lines if line.endswith("serving")]
    assert len(served) == 1
    assert re.search(r"\[req-t[] ]", served[0]), served[0]  # [req-t] or [req-t trace=...]


def test_log_lines_outside_a_request_say_so(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json_lines=True)
    logging.getLogger("tests.request_id").warning("no request")
    line = json.loads(capfd.readouterr().err.strip().splitlines()[-1])
    assert line["request_id"] == "-"
