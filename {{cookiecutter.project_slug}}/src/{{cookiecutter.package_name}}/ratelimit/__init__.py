"""Rate limiting on Redis: policies (`policy`), the limiter (`limiter`), the Lua in `lua/`."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from starlette.datastructures import State

from ..features import Feature
from ..redis_client import RedisClient
from ..settings import Settings
from .limiter import RateLimiter, rate_limit_document, rate_limit_step
from .policy import Policy, RoutePolicies, rate_limit, rate_limit_exempt

# What routes and main.py use; the rest is in .policy and .limiter.
__all__ = ["Policy", "rate_limit", "rate_limit_exempt", "rate_limit_feature"]


def rate_limit_feature(
    *,
    algorithm: str,
    identify_user: Callable[[Request], str | None] | None = None,
    route_policies: RoutePolicies | None = None,
) -> Feature:
    """Every route limited by RATE_LIMIT_DEFAULT unless exempt or given its own policy
    (`@rate_limit`, or `route_policies` here for routes defined elsewhere)."""

    def start(state: State, redis: RedisClient, settings: Settings) -> None:
        state.rate_limiter = RateLimiter(
            redis,
            settings,
            algorithm=algorithm,
            identify_user=identify_user,
            route_policies=route_policies,
            signals=state.signals,
        )

    return Feature(
        name="rate limiting",
        start=start,
        before=rate_limit_step,
        document=rate_limit_document(route_policies),
    )
