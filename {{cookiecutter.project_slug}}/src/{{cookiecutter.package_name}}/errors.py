"""One JSON error shape for every failure: `{"error": {"code", "message", "details"?}}`.

Clients can rely on it for 4xx and 5xx alike; no HTML page or traceback ever leaves
the service.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .redis_client import REDIS_UNAVAILABLE_ERRORS

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """An expected failure with a status, a stable machine-readable code and a message."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = jsonable_encoder(details)
    return {"error": error}


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, details), status_code=status_code, headers=headers
    )


# Codes that must not depend on the Python version (HTTPStatus renamed 413 and 422 in 3.13).
STABLE_CODES = {413: "body_too_large"}


def _code_for(status_code: int) -> str:
    if status_code in STABLE_CODES:
        return STABLE_CODES[status_code]
    try:
        return HTTPStatus(status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)  # noqa: S101 - registered for ServiceError only
    return error_response(
        exc.status_code, exc.code, exc.message, details=exc.details, headers=exc.headers
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    details = None if isinstance(exc.detail, str) else exc.detail
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # the router names one route's methods; RFC 9110 wants all
        headers["Allow"] = ", ".join(allowed_methods(request))
    return error_response(
        exc.status_code,
        _code_for(exc.status_code),
        message,
        details=details,
        headers=headers,
    )


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this request's path."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        match, _ = route.matches({**request.scope, "method": "\0"})  # no method matches
        if match is Match.PARTIAL and route.methods:
            methods.update(route.methods)
    return sorted(methods)


class BodyTooLargeError(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes.")


class BodyLimit:
    """Pure ASGI: refuses request bodies over MAX_BODY_BYTES with 413, before reading them
    whole. A declared Content-Length over the limit is refused at once; a body without one
    (chunked) is counted as it arrives, and the read that crosses the limit raises, which
    the route answers as 413."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await self._refuse(scope, receive, send, invalid=not value.isdigit())
                    return
                break
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLargeError(self.limit)
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, *, invalid: bool) -> None:
        if invalid:
            response = error_response(400, "bad_request", "Content-Length is not a number.")
        else:
            message = f"The request body is larger than {self.limit} bytes."
            response = error_response(
                413, "body_too_large", message, headers={"Connection": "close"}
            )
        await response(scope, receive, send)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    details = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg"), "type": error.get("type")}
        for error in exc.errors()
    ]
    return error_response(422, "validation_error", "The request is not valid.", details=details)


async def _redis_unavailable(_: Request, exc: Exception) -> JSONResponse:
    logger.warning("Redis unavailable: %s", exc.__class__.__name__)
    return error_response(
        503,
        "redis_unavailable",
        "A backing service is unavailable; try again shortly.",
        headers={"Retry-After": "1"},
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("Unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "Internal server error.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error_class in REDIS_UNAVAILABLE_ERRORS:
        app.add_exception_handler(error_class, _redis_unavailable)
    app.add_exception_handler(Exception, _unexpected)
