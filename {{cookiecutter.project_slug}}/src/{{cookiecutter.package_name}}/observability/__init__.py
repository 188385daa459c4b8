"""Observability: Prometheus metrics of what the service and Redis do for each feature
(`metrics`), served on a port of its own or behind a token (`web`)."""

from __future__ import annotations

from starlette.middleware import Middleware

from ..features import Feature
from ..settings import Settings
from ..signals import Signals
from .metrics import HttpMetrics, Metrics
from .web import router, serving

__all__ = ["metrics_feature"]


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
