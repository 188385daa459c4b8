"""fastapi-limiter (0.2.x, on pyrate-limiter) limiting one route with a Redis bucket."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from fastapi_limiter.depends import RateLimiter
from pyrate_limiter import Duration, Limiter, Rate, RedisBucket
from redis.asyncio import Redis

# The bucket needs a running event loop to be made: the dependency is set in the lifespan.
dependencies: dict[str, RateLimiter] = {}


async def limit(request: Request, response: Response) -> None:
    await dependencies["limiter"](request, response)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    redis = Redis.from_url(os.environ["REDIS_URL"])
    bucket = await RedisBucket.init([Rate(1_000_000_000, Duration.SECOND)], redis, "fl-bucket")
    dependencies["limiter"] = RateLimiter(Limiter(bucket))
    yield
    await redis.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/", dependencies=[Depends(limit)])
async def root() -> dict[str, bool]:
    return {"ok": True}
