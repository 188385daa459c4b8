"""The yardstick: what a FastAPI route that does one Redis GET costs, written the obvious way
(redis.asyncio, default pool), and the same app's route that does no Redis work at all."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.redis = Redis.from_url(os.environ["REDIS_URL"])
    await app.state.redis.set("naive:key", "value")
    yield
    await app.state.redis.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/bare")
async def bare() -> dict[str, bool]:
    return {"ok": True}


@app.get("/get")
async def get() -> dict[str, str | None]:
    value = await app.state.redis.get("naive:key")
    return {"cached": value.decode() if value else None}
