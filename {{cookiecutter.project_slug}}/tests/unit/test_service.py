"""The core service: root, health, and the one error shape."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from {{ cookiecutter.package_name }} import __version__
from {{ cookiecutter.package_name }}.main import create_app

from tests.redis_servers import free_port
from tests.service import Service, SettingsFactory, serve

pytestmark = pytest.mark.anyio


async def test_root_names_the_service_and_its_version(memory_service: Service) -> None:
    response = await memory_service.client.get("/")
    assert response.status_code == 200
    assert response.json() == {
        "name": memory_service.settings.app_name,
        "version": __version__,
        "docs": "/docs",
    }


async def test_liveness_answers_ok(memory_service: Service) -> None:
    response = await memory_service.client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_liveness_does_not_need_redis(make_settings: SettingsFactory) -> None:
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with serve(settings) as service:
        response = await service.client.get("/health/live")
    assert response.status_code == 200


async def test_the_service_starts_at_once_when_redis_refuses(
    make_settings: SettingsFactory,
) -> None:
    # Nothing waits out a timeout at startup: readiness says 503 until Redis is back.
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    started = time.perf_counter()
    async with serve(settings):
        elapsed = time.perf_counter() - started
    assert elapsed < 2.0


async def test_readiness_is_ok_when_redis_answers(memory_service: Service) -> None:
    response = await memory_service.client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "redis": {"topology": "memory"}}


async def test_readiness_is_503_json_within_its_deadline_when_redis_refuses(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with serve(settings) as service:
        started = time.perf_counter()
        response = await service.client.get("/health/ready")
        elapsed = time.perf_counter() - started
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"
    # Refused at once: well inside readiness's own deadline.
    assert elapsed < service.settings.health_timeout_seconds


async def test_openapi_docs_are_served(memory_service: Service) -> None:
    assert (await memory_service.client.get("/docs")).status_code == 200
    assert (await memory_service.client.get("/openapi.json")).json()["info"]["title"]


async def test_unknown_route_is_404_in_the_error_shape(memory_service: Service) -> None:
    response = await memory_service.client.get("/no/such/route")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found"}}


async def test_wrong_method_is_405_in_the_error_shape(memory_service: Service) -> None:
    response = await memory_service.client.delete("/health/live")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def _app_with_failing_routes(settings_factory: SettingsFactory) -> FastAPI:
    app = create_app(settings_factory())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    @app.get("/numbers/{number}")
    async def number(number: int) -> dict[str, int]:
        return {"number": number}

    @app.put("/numbers/{number}")
    async def put_number(number: int, body: dict[str, str]) -> dict[str, int]:
        return {"number": number, "fields": len(body)}

    return app


async def test_unhandled_error_is_500_json_without_a_traceback(
    make_settings: SettingsFactory,
) -> None:
    app = _app_with_failing_routes(make_settings)
    async with serve(make_settings(), app=app, raise_app_exceptions=False) as service:
        response = await service.client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "Internal server error."}
    }
    assert "secret" not in response.text


async def test_validation_error_stays_422_with_details(make_settings: SettingsFactory) -> None:
    app = _app_with_failing_routes(make_settings)
    async with serve(make_settings(), app=app) as service:
        response = await service.client.get("/numbers/not-a-number")
    assert response.status_code == 422
    body = response.json()["error"]
    assert body["code"] == "validation_error"
    assert body["details"][0]["loc"] == ["path", "number"]
    assert "input" not in body["details"][0]


async def test_a_405_lists_every_method_the_path_serves(make_settings: SettingsFactory) -> None:
    app = _app_with_failing_routes(make_settings)
    async with serve(make_settings(), app=app) as service:
        response = await service.client.delete("/numbers/7")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PUT"
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_a_declared_body_over_max_body_bytes_is_413_before_it_is_read(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(max_body_bytes=64)
    app = _app_with_failing_routes(lambda: settings)
    async with serve(settings, app=app) as service:
        response = await service.client.put("/numbers/7", json={"text": "x" * 100})
    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "body_too_large",
        "message": "The request body is larger than 64 bytes.",
    }


async def test_a_streamed_body_is_refused_with_413_once_it_crosses_the_limit(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(max_body_bytes=64)
    app = _app_with_failing_routes(lambda: settings)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"text": "'
        for _ in range(10):
            yield b"x" * 16
        yield b'"}'

    async with serve(settings, app=app) as service:
        response = await service.client.put("/numbers/7", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


async def test_a_body_within_max_body_bytes_is_served(make_settings: SettingsFactory) -> None:
    settings = make_settings(max_body_bytes=64)
    app = _app_with_failing_routes(lambda: settings)
    async with serve(settings, app=app) as service:
        response = await service.client.put("/numbers/7", json={"text": "short"})
    assert response.status_code == 200
    assert response.json() == {"number": 7, "fields": 1}


def test_every_documented_error_has_the_one_error_shape(make_settings: SettingsFactory) -> None:
    schema = _app_with_failing_routes(make_settings).openapi()
    errors = [
        response["content"]["application/json"]["schema"]
        for operations in schema["paths"].values()
        for operation in operations.values()
        for status, response in operation["responses"].items()
        if status.startswith(("4", "5"))
    ]
    assert errors
    assert all(error == {"$ref": "#/components/schemas/Error"} for error in errors)
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_an_operation_with_a_body_documents_400_413_and_422(make_settings: SettingsFactory) -> None:
    paths = _app_with_failing_routes(make_settings).openapi()["paths"]
    operation = paths["/numbers/{number}"]["put"]
    assert {"400", "413", "422"} <= set(operation["responses"])
