"""The fixed window's Lua at its edges, on a real Redis, with the clock pinned."""

from __future__ import annotations

import pytest

from {{ cookiecutter.package_name }}.ratelimit.limiter import RateLimiter

from tests.pinned_clock import T0, WINDOW_MS, decide

pytestmark = pytest.mark.anyio


async def test_the_first_request_counts_against_the_current_window(
    rate_limiter: RateLimiter,
) -> None:
    decision = await decide(rate_limiter, T0 + 15_000)
    assert (decision.allowed, decision.remaining, decision.reset_seconds) == (True, 9, 45)


async def test_the_limit_holds_until_the_window_ends(rate_limiter: RateLimiter) -> None:
    admitted = [await decide(rate_limiter, T0 + 1_000) for _ in range(10)]
    denied = await decide(rate_limiter, T0 + 20_000)
    assert all(decision.allowed for decision in admitted)
    assert not denied.allowed
    assert denied.retry_after_seconds == 40


async def test_a_new_window_starts_exactly_at_the_boundary(rate_limiter: RateLimiter) -> None:
    for _ in range(10):
        await decide(rate_limiter, T0)
    assert not (await decide(rate_limiter, T0 + WINDOW_MS - 1)).allowed
    fresh = await decide(rate_limiter, T0 + WINDOW_MS)
    assert (fresh.allowed, fresh.remaining) == (True, 9)


async def test_a_long_idle_gap_starts_from_zero(rate_limiter: RateLimiter) -> None:
    for _ in range(10):
        await decide(rate_limiter, T0)
    later = [await decide(rate_limiter, T0 + 86_400_000) for _ in range(11)]
    assert [decision.allowed for decision in later] == [True] * 10 + [False]
