"""Application factory: settings -> lifespan (one Redis client) -> the enabled features -> routes.

Serve it with `uvicorn {{ cookiecutter.package_name }}.main:create_app --factory`: nothing here
reads the environment or configures logging until `create_app()` is called.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from . import __version__, health
{%- if cookiecutter.__limits_logins %}
from .api import auth
{%- endif %}
{%- if cookiecutter.use_cache %}
from .cache import cache_feature
{%- endif %}
from .contract import install_contract
from .errors import BodyLimit, install_error_handlers
from .features import Feature
from .log import configure_logging
{%- if cookiecutter.__traces %}
from .observability.traces import tracing_feature
{%- endif %}
{%- if cookiecutter.__metrics %}
from .observability.web import metrics_feature
{%- endif %}
{%- if cookiecutter.__limits_logins %}
from .ratelimit import Policy, rate_limit_feature
{%- elif cookiecutter.rate_limiting != "none" %}
from .ratelimit import rate_limit_feature
{%- endif %}
{%- if cookiecutter.use_realtime %}
from .realtime import realtime_feature
{%- endif %}
from .redis_client import attach_signals, build_client, close, prepare
from .request_id import RequestId
from .request_path import RequestPath
{%- if cookiecutter.__limits_logins or (cookiecutter.use_sessions and cookiecutter.use_realtime) %}
from .sessions import (
{%- if cookiecutter.use_realtime %}
    current_user,
{%- endif %}
    sessions_feature,
{%- if cookiecutter.__limits_logins %}
    user_from_cookie,
{%- endif %}
{%- if cookiecutter.use_realtime %}
    websocket_user,
{%- endif %}
)
{%- elif cookiecutter.use_sessions %}
from .sessions import sessions_feature
{%- endif %}
from .settings import Settings, get_settings
from .signals import listening


def enabled_features() -> list[Feature]:
    return [
        # In order: each feature's middleware wraps the ones listed before it.
{%- if cookiecutter.use_cache %}
        cache_feature(),
{%- endif %}
{%- if cookiecutter.use_sessions %}
        sessions_feature(),
{%- endif %}
{%- if cookiecutter.rate_limiting != "none" %}
        rate_limit_feature(
            algorithm="{{ cookiecutter.rate_limiting }}",
{%- if cookiecutter.__limits_logins %}
            # Logged-in users are counted per user, not per address; guessing passwords:
            # 5 tries a minute per client, and no login while that cannot be checked.
            identify_user=user_from_cookie,
            route_policies={auth.login: Policy.parse("5/minute", name="login", fail_closed=True)},
{%- endif %}
        ),
{%- endif %}
{%- if cookiecutter.use_realtime and cookiecutter.use_sessions %}
        # Only logged-in users connect, subscribe and publish; each has a topic `me`.
        realtime_feature(websocket_user, current_user, notifications=True),
{%- elif cookiecutter.use_realtime %}
        realtime_feature(),
{%- endif %}
{%- if cookiecutter.__metrics %}
        # Listens to every part's signals, and counts every request, whoever answers it.
        metrics_feature(),
{%- endif %}
{%- if cookiecutter.__traces %}
        # A span for each request, its Redis calls as child spans; exported over OTLP when
        # OTEL_EXPORTER_OTLP_ENDPOINT is set, nothing recorded otherwise.
        tracing_feature(untraced=("/health/",{% if cookiecutter.__metrics %} "/metrics"{% endif %})),
{%- endif %}
    ]


def create_app(settings: Settings | None = None, features: list[Feature] | None = None) -> FastAPI:
    """The app; `features` (enabled_features() unless given) lets a test or a benchmark
    build it with fewer."""
    settings = settings or get_settings()
    features = enabled_features() if features is None else features
    configure_logging(
        settings.log_level,
        json_lines=settings.log_json,
        fields=[field for feature in features for field in feature.log_fields],
    )
    signals = listening([feature.listener(settings) for feature in features if feature.listener])
    # FastAPI's native OpenTelemetry: off unless a feature asks for it (the traces, when
    # they are exported); looking for a provider would cost every request.
    telemetry: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
    for feature in features:
        if feature.telemetry:
            telemetry.update(feature.telemetry(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = build_client(settings)
        attach_signals(app.state.redis, signals)
        await prepare(app.state.redis)
        for feature in features:
            if feature.start:
                feature.start(app.state, app.state.redis, settings)
        # Objects made at startup live as long as the process: freezing them keeps the
        # collector from walking them again and again.
        gc.collect()
        gc.freeze()
        try:
            async with AsyncExitStack() as running:
                for feature in features:
                    if feature.run:
                        await running.enter_async_context(feature.run(app.state))
                yield
        finally:
            await close(app.state.redis)

    app = FastAPI(
        title=settings.app_name,
        version=__version__,
        lifespan=lifespan,
        telemetry=telemetry,
    )
    app.state.settings = settings
    app.state.signals = signals
    app.state.readiness = [
        partial(feature.ready, app.state) for feature in features if feature.ready
    ]
    install_error_handlers(app)
    for feature in features:
        for middleware in feature.middleware:
            app.add_middleware(middleware.cls, *middleware.args, **middleware.kwargs)
    if any(feature.before for feature in features):
        # Outside the features: every feature's Redis work for a request in one round trip.
        app.add_middleware(RequestPath, features=features)
    # A body over MAX_BODY_BYTES costs no Redis work and is never read whole.
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_body_bytes)
    for feature in features:
        for middleware in feature.outer_middleware:
            app.add_middleware(middleware.cls, *middleware.args, **middleware.kwargs)
    # Outermost: every request has its id before anything logs about it.
    app.add_middleware(RequestId)
    install_contract(app, [feature.document(settings) for feature in features if feature.document])
    app.include_router(health.router)
    for feature in features:
        for router in feature.routers:
            app.include_router(router)

    @app.get("/", tags=["service"])
    async def about() -> dict[str, str]:
        return {"name": settings.app_name, "version": __version__, "docs": "/docs"}

    return app
