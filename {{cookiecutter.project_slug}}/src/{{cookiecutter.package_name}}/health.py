"""Liveness (the process answers) and readiness (Redis answers too)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .contract import errors
from .errors import error_response
from .redis_client import UNAVAILABLE_ERRORS, RedisClient, RedisDep
from .settings import Settings

router = APIRouter(prefix="/health", tags=["health"])


async def describe(client: RedisClient, settings: Settings) -> dict[str, Any]:
    """Check that Redis can serve requests and say what was checked (for /health/ready)."""
    if isinstance(client, RedisCluster):
        info = await client.cluster_info()
        state = info.get("cluster_state") if isinstance(info, dict) else None
        if state != "ok":
            raise RedisConnectionError(f"cluster_state is {state!r}, not 'ok'")
        return {"topology": "cluster", "cluster_state": state}
    await client.ping()
    if settings.uses_memory_redis:
        return {"topology": "memory"}
    if settings.redis_topology == "sentinel":
        pool = client.connection_pool
        master = getattr(pool, "master_address", None)
        address = f"{master[0]}:{master[1]}" if master else None
        return {"topology": "sentinel", "master": address}
    return {"topology": "standalone"}


@router.get("/live")
async def live() -> dict[str, str]:
    """The process is up. Never touches Redis, so a Redis outage does not restart pods."""
    return {"status": "ok"}


@router.get("/ready", responses=errors(e503="Redis did not answer in time."))
async def ready(request: Request, redis: RedisDep) -> Any:
    """Redis answers within HEALTH_TIMEOUT_SECONDS, even when it hangs instead of refusing."""
    settings: Settings = request.app.state.settings
    try:
        async with asyncio.timeout(settings.health_timeout_seconds):
            checks = await describe(redis, settings)
    except UNAVAILABLE_ERRORS as error:
        timed_out = isinstance(error, TimeoutError | RedisTimeoutError)
        message = (
            f"Redis did not answer within {settings.health_timeout_seconds} s."
            if timed_out
            else "Redis is unreachable."
        )
        return error_response(
            503, "not_ready", message, details={"reason": error.__class__.__name__}
        )
    problems = [problem for check in request.app.state.readiness if (problem := check())]
    if problems:
        return error_response(503, "not_ready", "; ".join(problems) + ".")
    return JSONResponse({"status": "ok", "redis": checks})
