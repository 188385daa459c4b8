"""Caching on Redis: data (`store`) and HTTP responses (`http`), with the Lua in `lua/`."""

from __future__ import annotations

from starlette.datastructures import State
from starlette.middleware import Middleware

from ..api import items
from ..features import Feature
from ..redis_client import RedisClient
from ..settings import Settings
from .http import CacheDep, CacheMiddleware, cache_document, cache_step, cached
from .store import Cache, CacheSerializationError

# What routes use; the rest is in .store and .http.
__all__ = ["Cache", "CacheDep", "CacheSerializationError", "cache_feature", "cached"]


def _start(state: State, redis: RedisClient, settings: Settings) -> None:
    state.cache = Cache(redis, settings, state.signals)
    state.item_values = items.ItemValues(redis, settings, state.signals)


def cache_feature() -> Feature:
    return Feature(
        name="cache",
        start=_start,
        routers=[items.router],
        middleware=[Middleware(CacheMiddleware)],
        before=cache_step,
        document=cache_document,
    )
