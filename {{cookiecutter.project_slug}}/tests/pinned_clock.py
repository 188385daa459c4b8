"""Deciding at a pinned time: the algorithms' edges, tested through the limiter's `now` hook."""

from __future__ import annotations

from {{ cookiecutter.package_name }}.ratelimit.limiter import RateLimiter
from {{ cookiecutter.package_name }}.ratelimit.policy import Decision, Policy

POLICY = Policy.parse("10/minute")
WINDOW_MS = 60_000
T0 = 1_800_000_000_000.0  # a window boundary (a multiple of 60 000)


async def decide(limiter: RateLimiter, at: float) -> Decision:
    """POLICY's decision for one client at `at` (ms); Redis must answer."""
    decision = await limiter.check(POLICY, "client", now_ms=at)
    assert decision is not None
    return decision
