"""Prometheus metrics: what every part of the service signals (signals.py), as figures.

* Names follow Prometheus' conventions: `<package>_` first, base units (`_seconds`),
  `_total` on counters. HTTP requests are labelled by route template, never by raw path,
  and /health and /metrics are left out.
* Several worker processes: with PROMETHEUS_MULTIPROC_DIR set (the Dockerfile sets it and
  empties it at start), every worker writes its figures there and any worker answers a
  scrape with the sum over all of them (client_python's multiprocess mode). Without it, each
  worker answers with its own figures only.
* Cheap on the request path: a signal adds to plain counters in this process, and these
  are written to the metrics (in multiprocess mode, to the shared files) once a second and
  before each scrape this worker answers; so another worker's figures in a scrape may be up
  to a second old. In multiprocess mode each write to the shared files takes a lock, and a
  request signals several times.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..routes import RouteIndex
from ..signals import listeners_of

PREFIX = (__package__ or "service").partition(".")[0]  # the service's package name
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: a Redis round trip on a LAN is 0.1-1 ms; a pool wait is 0 unless the pool is full.
REDIS_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
HTTP_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Requests to these are not counted: probes and scrapes would drown the service's traffic.
UNCOUNTED_PREFIXES = ("/health/", "/metrics")
FLUSH_SECONDS = 1.0
STATUS_TEXT = {status: str(status) for status in range(100, 600)}
# Methods are the client's choice: any other is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# How workers' gauges add up in multiprocess mode (only live workers count).
GaugeMode = Literal["livemax", "livemin", "livesum"]


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_DIR) or None


class Metrics:
    """The service's metrics, fed by signals; one per app (a registry of its own)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry

        def counter(name: str, text: str, *labels: str) -> Counter:
            return Counter(f"{PREFIX}_{name}", text, labels, registry=registry)

        def histogram(name: str, text: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
            return Histogram(f"{PREFIX}_{name}", text, labels, registry=registry, buckets=buckets)

        def gauge(name: str, text: str, mode: GaugeMode, *labels: str) -> Gauge:
            return Gauge(
                f"{PREFIX}_{name}", text, labels, registry=registry, multiprocess_mode=mode
            )

        self._counters: dict[str, Counter] = {
            "http_request": counter(
                "http_requests", "HTTP requests answered, by route template", "method", "route",
                "status",
            ),
{%- if cookiecutter.use_cache %}
            "cache_lookup": counter(
                "cache_lookups", "Cache lookups by result: hit, stale, miss, bypass, error",
                "namespace", "result",
            ),
            "cache_stampede_wait": counter(
                "cache_stampede_waits", "Lookups that waited for another caller's computation",
                "namespace",
            ),
{%- endif %}
{%- if cookiecutter.rate_limiting != "none" %}
            "ratelimit_decision": counter(
                "ratelimit_decisions",
                "Rate-limit decisions: allowed, limited, failed_open, failed_closed",
                "policy", "outcome",
            ),
{%- endif %}
{%- if cookiecutter.use_sessions %}
            "session_operation": counter(
                "session_operations", "Session store operations by outcome: ok, unavailable, error",
                "operation", "outcome",
            ),
{%- endif %}
{%- if cookiecutter.__uses_breaker %}
            "breaker_transition": counter(
                "breaker_transitions", "Circuit breaker state changes, by the state entered",
                "feature", "state",
            ),
{%- endif %}
{%- if cookiecutter.use_realtime %}
            "realtime_subscriber_connect": counter(
                "realtime_subscriber_connects", "Real-time subscriber connection attempts"
            ),
{%- endif %}
        }  # fmt: skip
        self._histograms: dict[str, Histogram] = {
            "http_request_duration": histogram(
                "http_request_duration_seconds",
                "Time to answer an HTTP request, by route template",
                HTTP_BUCKETS,
                "method",
                "route",
            ),
            "redis_command": histogram(
                "redis_command_duration_seconds",
                "Time Redis took to answer, by command, or Lua script by name",
                REDIS_BUCKETS,
                "command",
            ),
            "redis_pool_wait": histogram(
                "redis_pool_wait_seconds",
                "Time a command waited for a pool connection",
                REDIS_BUCKETS,
            ),
        }
        self._gauges: dict[str, Gauge] = {
{%- if cookiecutter.__uses_breaker %}
            "breaker_state": gauge(
                "breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open (the "
                "highest over workers)", "livemax", "feature",
            ),
{%- endif %}
{%- if cookiecutter.use_realtime %}
            "realtime_connections": gauge(
                "realtime_connections", "Open WebSocket and SSE connections", "livesum"
            ),
            "realtime_subscribed": gauge(
                "realtime_subscribed", "1 while every worker's real-time subscriber is "
                "subscribed (the lowest over workers)", "livemin",
            ),
{%- endif %}
        }  # fmt: skip
        # What was signalled since the last flush: counts, and histograms' bucket counts and
        # sums, by (name, labels).
        self._counted: dict[tuple[str, tuple[str, ...]], int] = {}
        self._observed: dict[tuple[str, tuple[str, ...]], _Pending] = {}

    # -- signals.Signals ------------------------------------------------------------------

    def count(self, name: str, *labels: str) -> None:
        key = (name, labels)
        self._counted[key] = self._counted.get(key, 0) + 1

    def observe(self, name: str, value: float, *labels: str) -> None:
        pending = self._observed.get((name, labels))
        if pending is None:
            metric = self._histograms[name]
            pending = self._observed[name, labels] = _Pending(
                metric.labels(*labels) if labels else metric, _bounds(self._histograms[name])
            )
        pending.buckets[bisect.bisect_left(pending.bounds, value)] += 1
        pending.total += value

    def level(self, name: str, value: float, *labels: str) -> None:
        metric = self._gauges[name]
        (metric.labels(*labels) if labels else metric).set(value)

    def flush(self) -> None:
        """Write what was signalled since the last flush to the metrics."""
        counted, self._counted = self._counted, {}
        for (name, labels), amount in counted.items():
            metric = self._counters[name]
            (metric.labels(*labels) if labels else metric).inc(amount)
        for pending in self._observed.values():
            pending.write()

    @asynccontextmanager
    async def flushing(self) -> AsyncIterator[None]:
        """Flush once a second while the block runs, and once more at its end."""

        async def keep_flushing() -> None:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                self.flush()

        task = asyncio.get_running_loop().create_task(keep_flushing())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.flush()

    # -- exposition -----------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text format: this process's figures, or every worker's in multiprocess mode
        (reading their files: call it in a thread)."""
        if multiprocess_dir() is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call, unused-ignore]
        return generate_latest(registry)

    async def scrape(self) -> bytes:
        self.flush()
        return await asyncio.to_thread(self.exposition)

    @staticmethod
    def process_ended() -> None:
        """This worker is stopping: its live gauges no longer count (multiprocess mode)."""
        directory = multiprocess_dir()
        if directory is not None:
            mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call, unused-ignore]


def metrics_of(state: State) -> Metrics:
    """The app's metrics, among whatever listens to its signals."""
    return next(
        listener for listener in listeners_of(state.signals) if isinstance(listener, Metrics)
    )


def _bounds(histogram: Histogram) -> list[float]:
    # client_python keeps a histogram's upper bounds (the last one +Inf) on the metric.
    bounds: list[float] = histogram._upper_bounds
    return bounds


class _Pending:
    """One histogram child's observations since the last flush."""

    __slots__ = ("bounds", "buckets", "child", "total")

    def __init__(self, child: Any, bounds: list[float]) -> None:
        self.child = child
        self.bounds = bounds
        self.buckets = [0] * len(bounds)
        self.total = 0.0

    def write(self) -> None:
        """As if each observation were made now with `observe` (which adds the value to
        the sum and one to the first bucket whose bound is at least the value)."""
        if not any(self.buckets):
            return
        self.child._sum.inc(self.total)
        for index, amount in enumerate(self.buckets):
            if amount:
                self.child._buckets[index].inc(amount)
                self.buckets[index] = 0
        self.total = 0.0


class HttpMetrics:
    """Pure ASGI, around everything: counts and times each HTTP request by method, route
    template and status, whoever answers it (the router, or a feature before routing)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.index = RouteIndex()
        self.metrics: Metrics | None = None  # the app's, found at the first request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNCOUNTED_PREFIXES):
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        if metrics is None:
            metrics = self.metrics = metrics_of(scope["app"].state)
        started = time.perf_counter()
        status = 500  # unless a response starts

        async def send_keeping_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_keeping_status)
        finally:
            took = time.perf_counter() - started
            method = scope["method"] if scope["method"] in METHODS else "other"
            route = self.index.template(scope) or "unmatched"
            metrics.count("http_request", method, route, STATUS_TEXT.get(status) or str(status))
            metrics.observe("http_request_duration", took, method, route)
