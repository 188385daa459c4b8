"""GCRA's Lua at its edges, on a real Redis, with the clock pinned (the `now` test hook)."""

from __future__ import annotations

import pytest

from {{ cookiecutter.package_name }}.ratelimit.limiter import RateLimiter

from tests.pinned_clock import T0, decide

pytestmark = pytest.mark.anyio

INTERVAL_MS = 6_000  # POLICY admits one request per 6 s, after a burst of 10


async def test_the_first_request_leaves_the_rest_of_the_burst(rate_limiter: RateLimiter) -> None:
    decision = await decide(rate_limiter, T0)
    assert (decision.allowed, decision.remaining, decision.reset_seconds) == (True, 9, 6)


async def test_a_full_burst_is_admitted_and_the_next_request_waits_one_interval(
    rate_limiter: RateLimiter,
) -> None:
    burst = [await decide(rate_limiter, T0) for _ in range(10)]
    denied = await decide(rate_limiter, T0)
    assert all(decision.allowed for decision in burst)
    assert [decision.remaining for decision in burst] == list(range(9, -1, -1))
    assert not denied.allowed
    assert denied.retry_after_seconds == INTERVAL_MS // 1000
    assert denied.reset_seconds == 60


async def test_the_next_request_is_admitted_exactly_one_interval_later(
    rate_limiter: RateLimiter,
) -> None:
    for _ in range(10):
        await decide(rate_limiter, T0)
    assert not (await decide(rate_limiter, T0 + INTERVAL_MS - 1)).allowed
    assert (await decide(rate_limiter, T0 + INTERVAL_MS)).allowed


async def test_a_long_idle_gap_refills_the_burst_but_never_beyond_it(
    rate_limiter: RateLimiter,
) -> None:
    for _ in range(10):
        await decide(rate_limiter, T0)
    later = [await decide(rate_limiter, T0 + 86_400_000) for _ in range(11)]
    assert [decision.allowed for decision in later] == [True] * 10 + [False]
