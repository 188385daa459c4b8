"""Traces for tests: the app with its spans kept in memory, and a collector of our own that
receives OTLP/HTTP as a real one does and decodes the protobuf."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastapi import FastAPI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from {{ cookiecutter.package_name }}.features import Feature
from {{ cookiecutter.package_name }}.main import create_app, enabled_features
from {{ cookiecutter.package_name }}.observability.traces import Tracing, tracing_feature
from {{ cookiecutter.package_name }}.settings import Settings


def traced_app(settings: Settings, exporter: InMemorySpanExporter) -> FastAPI:
    """The app with its usual features, its spans going to `exporter` as each one ends."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    features = [
        tracing_feature(untraced_of(feature), provider) if feature.name == "traces" else feature
        for feature in enabled_features()
    ]
    return create_app(settings, features)


def untraced_of(feature: Feature) -> tuple[str, ...]:
    """The paths the service's own tracing feature (main.py's) leaves untraced."""
    tracing = getattr(feature.listener, "__self__", None)
    assert isinstance(tracing, Tracing)
    return tracing.untraced


def server_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    """The one request span the exporter holds."""
    (span,) = [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER]
    return span


def children_of(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    parent_id = parent.context.span_id
    return [span for span in spans if span.parent is not None and span.parent.span_id == parent_id]


def only(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver on a free port of 127.0.0.1: what it was sent, decoded."""

    endpoint: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    posts: int = 0
    received: threading.Condition = field(default_factory=threading.Condition)

    def take(self, request: ExportTraceServiceRequest) -> None:
        with self.received:
            self.posts += 1
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes=_attributes(span.attributes),
                            resource=resource,
                        )
                        for span in scope_spans.spans
                    )
            self.received.notify_all()

    def wait_for(self, name: str, timeout: float = 10) -> ReceivedSpan:
        """The first span named `name`, once it has arrived."""
        with self.received:
            self.received.wait_for(
                lambda: any(span.name == name for span in self.spans), timeout=timeout
            )
            found = [span for span in self.spans if span.name == name]
        assert found, f"no span {name!r} within {timeout} s; received {self.spans}"
        return found[0]


@contextmanager
def otlp_collector() -> Iterator[Collector]:
    collector = Collector()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            collector.take(ExportTraceServiceRequest.FromString(body))
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    collector.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
