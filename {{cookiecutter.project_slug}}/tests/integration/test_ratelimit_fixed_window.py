"""The fixed window's Lua at its edges, on a real Redis, with the clock pinned."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from {{ cookiecutter.package_name }}.ratelimit import Decision, Policy, RateLimiter

from tests.conftest import SettingsFactory, serve

pytestmark = pytest.mark.anyio

POLICY = Policy.parse("10/minute")
WINDOW_MS = 60_000
T0 = 1_800_000_000_000.0  # a window boundary (a multiple of 60 000)


@pytest.fixture
async def limiter(real_settings: SettingsFactory) -> AsyncIterator[RateLimiter]:
    async with serve(real_settings()) as service:
        yield service.app.state.rate_limiter


async def decide(limiter: RateLimiter, at: float) -> Decision:
    decision = await limiter.check(POLICY, "client", now_ms=at)
    assert decision is not None
    return decision


async def test_the_first_request_counts_against_the_current_window(limiter: RateLimiter) -> None:
    decision = await decide(limiter, T0 + 15_000)
    assert (decision.allowed, decision.remaining, decision.reset_seconds) == (True, 9, 45)


async def test_the_limit_holds_until_the_window_ends(limiter: RateLimiter) -> None:
    admitted = [await decide(limiter, T0 + 1_000) for _ in range(10)]
    denied = await decide(limiter, T0 + 20_000)
    assert all(decision.allowed for decision in admitted)
    assert not denied.allowed
    assert denied.retry_after_seconds == 40


async def test_a_new_window_starts_exactly_at_the_boundary(limiter: RateLimiter) -> None:
    for _ in range(10):
        await decide(limiter, T0)
    assert not (await decide(limiter, T0 + WINDOW_MS - 1)).allowed
    fresh = await decide(limiter, T0 + WINDOW_MS)
    assert (fresh.allowed, fresh.remaining) == (True, 9)


async def test_a_long_idle_gap_starts_from_zero(limiter: RateLimiter) -> None:
    for _ in range(10):
        await decide(limiter, T0)
    later = [await decide(limiter, T0 + 86_400_000) for _ in range(11)]
    assert [decision.allowed for decision in later] == [True] * 10 + [False]
