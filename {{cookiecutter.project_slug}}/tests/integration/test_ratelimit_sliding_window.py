"""The sliding window's Lua at its edges, on a real Redis, with the clock pinned."""

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


async def test_the_first_request_leaves_the_rest_of_the_quota(limiter: RateLimiter) -> None:
    decision = await decide(limiter, T0 + 15_000)
    assert (decision.allowed, decision.remaining) == (True, 9)


async def test_a_full_window_denies_and_says_when_the_estimate_makes_room(
    limiter: RateLimiter,
) -> None:
    admitted = [await decide(limiter, T0) for _ in range(10)]
    denied = await decide(limiter, T0)
    assert all(decision.allowed for decision in admitted)
    assert not denied.allowed
    # Next window, the ten weigh 10 * (1 - elapsed / 60 s): room for one at 6 s in.
    assert denied.retry_after_seconds == 66


async def test_the_previous_window_still_counts_right_after_the_boundary(
    limiter: RateLimiter,
) -> None:
    for _ in range(10):
        await decide(limiter, T0)
    assert not (await decide(limiter, T0 + WINDOW_MS)).allowed
    assert not (await decide(limiter, T0 + WINDOW_MS + 6_000 - 1)).allowed
    assert (await decide(limiter, T0 + WINDOW_MS + 6_000)).allowed


async def test_never_more_than_the_limit_in_one_period_across_a_boundary(
    limiter: RateLimiter,
) -> None:
    admitted_late = [await decide(limiter, T0 + WINDOW_MS - 1_000) for _ in range(12)]
    admitted_early = [await decide(limiter, T0 + WINDOW_MS + 1_000) for _ in range(12)]
    count = sum(d.allowed for d in admitted_late) + sum(d.allowed for d in admitted_early)
    assert count == 10  # within 2 s of each other: the approximation holds the limit


async def test_a_long_idle_gap_starts_from_zero(limiter: RateLimiter) -> None:
    for _ in range(10):
        await decide(limiter, T0)
    later = [await decide(limiter, T0 + 2 * WINDOW_MS + 1) for _ in range(11)]
    assert [decision.allowed for decision in later] == [True] * 10 + [False]
