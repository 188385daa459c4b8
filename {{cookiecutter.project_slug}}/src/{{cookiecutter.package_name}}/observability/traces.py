"""OpenTelemetry traces: a span for each request, and in it a span for each Redis command
the request made, a Lua script named after its purpose (`<feature>.<script>`),
not EVALSHA and a hash.

* The request span is FastAPI's own (its native OpenTelemetry support): W3C `traceparent`
  honoured, HTTP attributes as OpenTelemetry's conventions name them. `SpanRoute` names it
  by the route's template even when the request is answered before routing (a cached
  response, a 429).
* The Redis spans are made from the client's `redis_command` signals (signals.py), so they
  cover the request path's commands too, sent in one write on a raw connection where no
  redis-py instrumentation sees them. Commands sent together share their round trip: each
  one's span lasts the whole of it.
* Spans go over OTLP/HTTP to the endpoint the settings name (settings.traces_endpoint),
  in batches, from a thread of their own. With no endpoint nothing is set up: no span is
  made, nothing is sent, FastAPI's telemetry stays off, and no error is logged.
* Log lines carry the trace's id while a span is current (`trace_id` and `span_id` in JSON).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind
from starlette.datastructures import State
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..features import Feature
from ..log import LogField
from ..routes import RouteIndex
from ..settings import Settings
from ..signals import UNHEARD, Signals

TRACER_NAME = __name__.split(".")[0]


def exporting_provider(settings: Settings) -> TracerProvider | None:
    """A tracer provider that sends spans to settings.traces_endpoint in batches, or None
    when there is no endpoint. The SDK reads the rest from the environment: the sampler
    (OTEL_TRACES_SAMPLER), resource attributes, the exporter's headers, timeout and
    compression, and the batches' sizes and delays (OTEL_BSP_*)."""
    endpoint = settings.traces_endpoint
    if endpoint is None:
        return None
    resource = Resource.create(
        {SERVICE_NAME: settings.otel_service_name, SERVICE_VERSION: __version__}
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


class RedisSpans:
    """Listens to the signals: each Redis command becomes a client span, a child of the span
    current when it was sent (the request's); with none recording, it costs one check."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def count(self, name: str, *labels: str) -> None:
        pass

    def level(self, name: str, value: float, *labels: str) -> None:
        pass

    def observe(self, name: str, value: float, *labels: str) -> None:
        if name != "redis_command" or not trace.get_current_span().is_recording():
            return
        ended = time.time_ns()
        kind = labels[0]
        attributes: dict[str, Any] = {"db.system.name": "redis"}
        if "." in kind:  # a script's name: see redis_client.command_kind
            attributes["db.operation.name"] = "EVALSHA"
            attributes["db.stored_procedure.name"] = kind
        else:
            attributes["db.operation.name"] = kind
        span = self.tracer.start_span(
            kind, kind=SpanKind.CLIENT, attributes=attributes, start_time=ended - int(value * 1e9)
        )
        span.end(end_time=ended)


class SpanRoute:
    """Pure ASGI, inside FastAPI's request span: names the span `GET /users/{user_id}` and
    sets http.route before anything answers, as FastAPI does only when its router routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.index = RouteIndex()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            span = trace.get_current_span()
            if span.is_recording():
                template = self.index.template(scope)
                if template is not None:
                    span.update_name(f"{scope['method']} {template}")
                    span.set_attribute("http.route", template)
        await self.app(scope, receive, send)


class TraceIdFilter(logging.Filter):
    """Gives every record the current trace's and span's ids ("-" with no span)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        else:
            record.trace_id = record.span_id = "-"
        return True


class Tracing:
    """The traces of one app: its tracer provider, made from the settings at the app's
    creation (or given, as tests do), and shut down, its last spans sent, when it stops."""

    def __init__(self, untraced: Sequence[str], provider: TracerProvider | None) -> None:
        self.untraced = tuple(untraced)
        self.given = provider
        self.provider: TracerProvider | None = None
        self.resolved = False
        self.owned = False

    def resolve(self, settings: Settings) -> TracerProvider | None:
        """The provider, decided once: the one given, or one made from the settings."""
        if self.resolved:
            return self.provider
        self.resolved = True
        if self.given is not None:
            self.provider = self.given
            return self.provider
        self.provider = exporting_provider(settings)
        self.owned = self.provider is not None
        unset = isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        if self.provider is not None and unset:
            # The process's provider too: the service's own code can add spans to a request's
            # with trace.get_tracer(__name__).
            trace.set_tracer_provider(self.provider)
        return self.provider

    def listener(self, settings: Settings) -> Signals:
        provider = self.resolve(settings)
        if provider is None:
            return UNHEARD
        return RedisSpans(provider.get_tracer(TRACER_NAME, __version__))

    def telemetry(self, settings: Settings) -> TelemetryConfig:
        provider = self.resolve(settings)
        if provider is None:
            return {"tracing": False}
        return {
            "tracing": True,
            "tracer_provider": provider,
            # Spans for dependencies, endpoint and serialization would triple the spans of a
            # request: the request and its Redis calls are what these traces are for.
            "operation_spans": False,
            "auto_configure": False,
            "exclude": self.excluded,
        }

    def excluded(self, scope: Any) -> bool:
        path: str = scope.get("path", "")
        return path.startswith(self.untraced)

    def span_route(self, app: ASGIApp) -> ASGIApp:
        """SpanRoute around `app` when there are spans to name; with none, nothing at all (the
        middleware stack is built at the first request, after the app resolved its provider)."""
        return app if self.provider is None else SpanRoute(app)

    @asynccontextmanager
    async def running(self, _: State) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if self.owned and self.provider is not None:
                # Sends what is still queued, within OTEL_BSP_EXPORT_TIMEOUT.
                await asyncio.to_thread(self.provider.shutdown)


def tracing_feature(
    untraced: Sequence[str] = ("/health/",), provider: TracerProvider | None = None
) -> Feature:
    """Traces of every request but those whose path starts with one of `untraced`; spans go
    to `provider` when given (tests), else where the settings say."""
    tracing = Tracing(untraced, provider)
    return Feature(
        name="traces",
        listener=tracing.listener,
        telemetry=tracing.telemetry,
        run=tracing.running,
        outer_middleware=[Middleware(tracing.span_route)],
        log_fields=[LogField(TraceIdFilter(), "trace=%(trace_id)s")],
    )
