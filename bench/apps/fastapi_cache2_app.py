"""fastapi-cache2 (0.2.x) caching one route's response in Redis, as its README shows."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_cache import FastAPICache
from fastapi_cache.backends.redis import RedisBackend
from fastapi_cache.decorator import cache
from redis import asyncio as aioredis


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    FastAPICache.init(RedisBackend(aioredis.from_url(os.environ["REDIS_URL"])), prefix="fc")
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/items/{item_id}")
@cache(expire=3600)
async def item(item_id: str) -> dict[str, str | None]:
    return {"id": item_id, "value": None}
