"""Application factory: settings -> lifespan (one Redis client) -> middleware -> routes."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from . import __version__, health
{%- if cookiecutter.use_cache %}
from .api import items
from .cache import Cache, CacheMiddleware
{%- endif %}
from .errors import install_error_handlers
from .log import configure_logging
from .redis_client import build_client
from .settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = build_client(settings)
{%- if cookiecutter.use_cache %}
        app.state.cache = Cache(app.state.redis, settings)
{%- endif %}
        # Objects made at startup live as long as the process: move them out of the
        # collector's way (measured: fewer and shorter full collections, lower p99).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await app.state.redis.aclose()

    app = FastAPI(title=settings.app_name, version=__version__, lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
{%- if cookiecutter.use_cache %}
    app.add_middleware(CacheMiddleware)
{%- endif %}
    app.include_router(health.router)
{%- if cookiecutter.use_cache %}
    app.include_router(items.router)
{%- endif %}

    @app.get("/", tags=["service"])
    async def about() -> dict[str, str]:
        return {"name": settings.app_name, "version": __version__, "docs": "/docs"}

    return app


app = create_app()
