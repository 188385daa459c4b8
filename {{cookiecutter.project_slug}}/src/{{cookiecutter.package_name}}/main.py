"""Application factory: settings -> lifespan (one Redis client) -> middleware -> routes."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import {{ "Depends, " if cookiecutter.rate_limiting != "none" }}FastAPI

from . import __version__, health
{%- if cookiecutter.use_cache and cookiecutter.use_sessions %}
from .api import auth, items
{%- elif cookiecutter.use_cache %}
from .api import items
{%- elif cookiecutter.use_sessions %}
from .api import auth
{%- endif %}
{%- if cookiecutter.use_cache %}
from .cache import Cache, CacheMiddleware
{%- endif %}
from .errors import install_error_handlers
from .log import configure_logging
{%- if cookiecutter.rate_limiting != "none" %}
from .ratelimit import (
    RateLimiter,
    RateLimitHeadersMiddleware,
    enforce_rate_limit,
{%- if cookiecutter.use_sessions %}
    rate_limit,
{%- endif %}
)
{%- endif %}
from .redis_client import build_client, close, prepare
{%- if cookiecutter.use_sessions and cookiecutter.rate_limiting != "none" %}
from .sessions import SessionStore, user_from_cookie
{%- elif cookiecutter.use_sessions %}
from .sessions import SessionStore
{%- endif %}
from .settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = build_client(settings)
        await prepare(app.state.redis)
{%- if cookiecutter.use_cache %}
        app.state.cache = Cache(app.state.redis, settings)
{%- endif %}
{%- if cookiecutter.use_sessions %}
        app.state.sessions = SessionStore(app.state.redis, settings)
{%- endif %}
{%- if cookiecutter.rate_limiting != "none" %}
        app.state.rate_limiter = RateLimiter(
            app.state.redis,
            settings,
            algorithm="{{ cookiecutter.rate_limiting }}",
{%- if cookiecutter.use_sessions %}
            identify_user=user_from_cookie,
{%- endif %}
        )
{%- endif %}
        # Objects made at startup live as long as the process: freezing them keeps the
        # collector from walking them again and again (shorter pauses, lower tail latency).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await close(app.state.redis)
{% if cookiecutter.rate_limiting != "none" %}
    app = FastAPI(
        title=settings.app_name,
        version=__version__,
        lifespan=lifespan,
        # Decided before any route's own dependencies run.
        dependencies=[Depends(enforce_rate_limit)],
    )
{%- else %}
    app = FastAPI(title=settings.app_name, version=__version__, lifespan=lifespan)
{%- endif %}
    app.state.settings = settings
    install_error_handlers(app)
{%- if cookiecutter.use_cache %}
    app.add_middleware(CacheMiddleware)
{%- endif %}
{%- if cookiecutter.rate_limiting != "none" %}
    app.add_middleware(
        RateLimitHeadersMiddleware, legacy_headers=settings.rate_limit_legacy_headers
    )
{%- endif %}
    app.include_router(health.router)
{%- if cookiecutter.use_cache %}
    app.include_router(items.router)
{%- endif %}
{%- if cookiecutter.use_sessions %}
    app.include_router(auth.router)
{%- endif %}
{%- if cookiecutter.use_sessions and cookiecutter.rate_limiting != "none" %}
    # Guessing passwords: 5 tries a minute per client, and no login while that cannot be checked.
    rate_limit("5/minute", name="login", fail_closed=True)(auth.login)
{%- endif %}

    @app.get("/", tags=["service"])
    async def about() -> dict[str, str]:
        return {"name": settings.app_name, "version": __version__, "docs": "/docs"}

    return app


app = create_app()
