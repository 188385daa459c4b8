"""The OpenAPI contract: every operation lists the error answers it can give, in the one error
shape (the `Error` schema), so a client generated from it knows them.

The core documents what applies to every route (413 and 400 for a body, the error shape of
422); each feature documents its own answers on the routes it works on (`Feature.document`);
a route documents its own errors with `responses=errors(...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from .request_id import HEADER

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable"},
                "message": {"type": "string", "description": "for people"},
                "details": {"description": "more about the error, when there is more"},
            },
        }
    },
}

# A feature's documentation of one operation: it adds to `operation` (and to `components`).
Document = Callable[[RouteContext, str, dict[str, Any], dict[str, Any]], None]


def error_doc(description: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An OpenAPI response in the error shape; `headers` maps names to their descriptions."""
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    if headers:
        response["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return response


def errors(**descriptions: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route's own errors: `errors(e409="That username is taken.")`."""
    return {int(key.removeprefix("e")): error_doc(text) for key, text in descriptions.items()}


def add_response(operation: dict[str, Any], status: int, response: dict[str, Any]) -> None:
    """Document an answer unless the route documented that status itself."""
    operation.setdefault("responses", {}).setdefault(str(status), response)


def add_headers(operation: dict[str, Any], headers: Mapping[str, str]) -> None:
    """Document headers on every successful answer of the operation."""
    for status, response in operation.get("responses", {}).items():
        if status.startswith("2"):
            documented = response.setdefault("headers", {})
            for name, text in headers.items():
                documented.setdefault(name, {"description": text, "schema": {"type": "string"}})


def _document_core(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    if "422" in responses:  # FastAPI documents its own validation shape; ours is the one shape
        responses["422"] = error_doc("The request is not valid (`details` says where).")
    if "requestBody" in operation:
        add_response(operation, 400, error_doc("The body or its Content-Length is malformed."))
        add_response(operation, 413, error_doc("The body is larger than MAX_BODY_BYTES."))


def _document_request_id(operation: dict[str, Any]) -> None:
    """Every answer carries the request's id (request_id.py)."""
    for response in operation.get("responses", {}).values():
        response.setdefault("headers", {}).setdefault(
            HEADER,
            {
                "description": "The request's id: the caller's X-Request-ID when it is safe "
                "(1-128 of A-Z a-z 0-9 . _ : + = / -), else a new one. Log lines carry it.",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:+=/-]{1,128}$"},
            },
        )


def install_contract(app: FastAPI, documents: Sequence[Document]) -> None:
    """Build the OpenAPI schema once, with every operation's documented answers."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, routes=app.routes, description=app.description
        )
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        paths = schema.get("paths", {})
        for route in iter_route_contexts(app.router.routes):
            if not isinstance(route.original_route, APIRoute):
                continue
            for method in sorted(route.methods or ()):
                operation = paths.get(route.path_format, {}).get(method.lower())
                if operation is None:
                    continue  # not in the schema (include_in_schema=False)
                _document_core(operation)
                for document in documents:
                    document(route, method, operation, components)
                _document_request_id(operation)
        schemas = components.get("schemas", {})
        if not any("HTTPValidationError" in str(path) for path in paths.values()):
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
