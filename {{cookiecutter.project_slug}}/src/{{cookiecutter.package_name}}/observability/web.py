"""Serving /metrics: on a port of its own (METRICS_PORT, the default), or on the service's
port (METRICS_PORT=0). Wherever it is served, METRICS_TOKEN, when set, is required as
`Authorization: Bearer <token>`; APP_ENV=production refuses the service's port without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.datastructures import State
from starlette.middleware import Middleware

from ..errors import error_body, error_response
from ..features import Feature
from ..settings import Settings
from ..signals import Signals
from .metrics import HttpMetrics, Metrics, metrics_of, multiprocess_dir

logger = logging.getLogger(__name__)

router = APIRouter()
UNAUTHORIZED = (401, "unauthorized", "Send Authorization: Bearer <METRICS_TOKEN>.")
NOT_HERE = (404, "not_found", "Metrics are served on METRICS_PORT.")


def refusal(settings: Settings, authorization: str | None) -> tuple[int, str, str] | None:
    """Why this scrape is refused (status, code, message), or None to answer it."""
    token = settings.metrics_token
    if token is None:
        return None
    expected = f"Bearer {token.get_secret_value()}".encode()
    if hmac.compare_digest((authorization or "").encode("latin-1"), expected):
        return None
    return UNAUTHORIZED


@router.get("/metrics", include_in_schema=False)
async def metrics_on_service_port(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    refused = NOT_HERE if settings.metrics_port else None
    refused = refused or refusal(settings, request.headers.get("authorization"))
    if refused is not None:
        status, code, message = refused
        return error_response(status, code, message, headers=_challenge(status))
    metrics = metrics_of(request.app.state)
    return Response(await metrics.scrape(), media_type=CONTENT_TYPE_LATEST)


def _challenge(status: int) -> dict[str, str]:
    return {"WWW-Authenticate": "Bearer"} if status == 401 else {}


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: State) -> None:
    """One request on the metrics port (HTTP/1.1, one request per connection)."""
    settings: Settings = state.settings
    try:
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        writer.close()
        return
    lines = head.decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    path = rest.partition(" ")[0].partition("?")[0]
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    refused: tuple[int, str, str] | None
    if path != "/metrics":
        refused = (404, "not_found", "Only /metrics is served here.")
    elif method not in ("GET", "HEAD"):
        refused = (405, "method_not_allowed", "Use GET.")
    else:
        refused = refusal(settings, headers.get("authorization"))
    if refused is None:
        metrics = metrics_of(state)
        status, body, content_type = 200, await metrics.scrape(), CONTENT_TYPE_LATEST
    else:
        status, code, message = refused
        body = json.dumps(error_body(code, message)).encode()
        content_type = "application/json"
    extra = "".join(f"{name}: {value}\r\n" for name, value in _challenge(status).items())
    reason = "OK" if status == 200 else "Error"
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n".encode()
    )
    if method != "HEAD":
        writer.write(body)
    with contextlib.suppress(OSError):
        await writer.drain()
    writer.close()


@asynccontextmanager
async def serving(state: State) -> AsyncIterator[None]:
    """While the app runs: flush the signals to the metrics every second, and serve /metrics
    on METRICS_HOST:METRICS_PORT unless it is 0. With several workers the first one to
    start listens; in multiprocess mode it answers with the sum over all of them."""
    settings: Settings = state.settings
    metrics = metrics_of(state)
    async with metrics.flushing(), _metrics_port(settings, state):
        yield
    metrics.process_ended()


@asynccontextmanager
async def _metrics_port(settings: Settings, state: State) -> AsyncIterator[None]:
    server = None
    address = f"{settings.metrics_host}:{settings.metrics_port}"
    try:
        if settings.metrics_port:
            server = await asyncio.start_server(
                lambda reader, writer: _answer(reader, writer, state),
                settings.metrics_host,
                settings.metrics_port,
            )
            logger.info("metrics on http://%s/metrics", address)
    except OSError as error:
        # Another worker of this service holds it (expected with several workers), or
        # something else does: the service runs on, and says so once.
        expected = multiprocess_dir() is not None
        logger.log(
            logging.INFO if expected else logging.WARNING,
            "METRICS_PORT=%d: cannot listen on %s (%s); this worker serves no /metrics",
            settings.metrics_port,
            address,
            os.strerror(error.errno) if error.errno else error,
        )
    try:
        yield
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()


def _listener(_: Settings) -> Signals:
    return Metrics()


def metrics_feature() -> Feature:
    return Feature(
        name="metrics",
        routers=[router],
        run=serving,
        listener=_listener,
        outer_middleware=[Middleware(HttpMetrics)],
    )
