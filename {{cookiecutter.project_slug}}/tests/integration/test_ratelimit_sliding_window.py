"""The sliding window's Lua at its edges, on a real Redis, with the clock pinned."""

from __future__ import annotations

import pytest

from {{ cookiecutter.package_name }}.ratelimit.limiter import RateLimiter

from tests.pinned_clock import T0, WINDOW_MS, decide

pytestmark = pytest.mark.anyio


async def test_the_first_request_leaves_the_rest_of_the_quota(rate_limiter: RateLimiter) -> None:
    decision = await decide(rate_limiter, T0 + 15_000)
    assert (decision.allowed, decision.remaining) == (True, 9)


async def test_a_full_window_denies_and_says_when_the_estimate_makes_room(
    rate_limiter: RateLimiter,
) -> None:
    admitted = [await decide(rate_limiter, T0) for _ in range(10)]
    denied = await decide(rate_limiter, T0)
    assert all(decision.allowed for decision in admitted)
    assert not denied.allowed
    # Next window, the ten weigh 10 * (1 - elapsed / 60 s): room for one at 6 s in.
    assert denied.retry_after_seconds == 66


async def test_the_previous_window_still_counts_right_after_the_boundary(
    rate_limiter: RateLimiter,
) -> None:
    for _ in range(10):
        await decide(rate_limiter, T0)
    assert not (await decide(rate_limiter, T0 + WINDOW_MS)).allowed
    assert not (await decide(rate_limiter, T0 + WINDOW_MS + 6_000 - 1)).allowed
    assert (await decide(rate_limiter, T0 + WINDOW_MS + 6_000)).allowed


async def test_never_more_than_the_limit_in_one_period_across_a_boundary(
    rate_limiter: RateLimiter,
) -> None:
    admitted_late = [await decide(rate_limiter, T0 + WINDOW_MS - 1_000) for _ in range(12)]
    admitted_early = [await decide(rate_limiter, T0 + WINDOW_MS + 1_000) for _ in range(12)]
    count = sum(d.allowed for d in admitted_late) + sum(d.allowed for d in admitted_early)
    assert count == 10  # within 2 s of each other: the approximation holds the limit


async def test_a_long_idle_gap_starts_from_zero(rate_limiter: RateLimiter) -> None:
    for _ in range(10):
        await decide(rate_limiter, T0)
    later = [await decide(rate_limiter, T0 + 2 * WINDOW_MS + 1) for _ in range(11)]
    assert [decision.allowed for decision in later] == [True] * 10 + [False]
