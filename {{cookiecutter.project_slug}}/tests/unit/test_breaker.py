"""The circuit breaker: fail fast during an outage, probe one request at a time, log once."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from {{ cookiecutter.package_name }}.breaker import (
    BreakerState,
    CircuitBreaker,
    RedisUnavailableError,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(
        "test", threshold=3, cooldown_seconds=5, logger=logging.getLogger("test"), clock=clock
    )


def test_failures_below_the_threshold_keep_it_closed(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        breaker.failed(ConnectionError())
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_consecutive_failures_open_it(breaker: CircuitBreaker) -> None:
    for _ in range(3):
        breaker.failed(ConnectionError())
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_a_success_resets_the_count(breaker: CircuitBreaker) -> None:
    breaker.failed(ConnectionError())
    breaker.failed(ConnectionError())
    breaker.succeeded()
    breaker.failed(ConnectionError())
    assert breaker.state is BreakerState.CLOSED


def test_after_the_cooldown_exactly_one_caller_may_try(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    for _ in range(3):
        breaker.failed(ConnectionError())
    clock.now += 5
    assert breaker.allow()
    assert not breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN


def test_a_successful_trial_closes_it(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(3):
        breaker.failed(ConnectionError())
    clock.now += 5
    breaker.allow()
    breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_a_failed_trial_opens_it_for_another_cooldown(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    for _ in range(3):
        breaker.failed(ConnectionError())
    clock.now += 5
    breaker.allow()
    breaker.failed(TimeoutError())
    assert breaker.state is BreakerState.OPEN
    clock.now += 4.9
    assert not breaker.allow()


def test_each_state_change_is_logged_once(
    breaker: CircuitBreaker, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="test"):
        for _ in range(10):
            breaker.failed(ConnectionError())
        clock.now += 5
        breaker.allow()
        breaker.failed(ConnectionError())  # still down: no new message
        clock.now += 5
        breaker.allow()
        breaker.succeeded()
        breaker.succeeded()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "skipping it" in messages[0]
    assert "answers again" in messages[1]


async def _answer() -> str:
    return "answer"


async def _refuse() -> str:
    raise RedisConnectionError("refused")


async def _script_bug() -> str:
    raise ResponseError("ERR user_script:1: oops")


@pytest.mark.anyio
async def test_a_call_that_answers_returns_its_result(breaker: CircuitBreaker) -> None:
    assert await breaker.call(_answer) == "answer"


@pytest.mark.anyio
async def test_an_unavailable_redis_becomes_one_error_and_counts(breaker: CircuitBreaker) -> None:
    for _ in range(3):
        with pytest.raises(RedisUnavailableError):
            await breaker.call(_refuse)
    assert breaker.state is BreakerState.OPEN


@pytest.mark.anyio
async def test_an_open_breaker_does_not_even_start_the_call(breaker: CircuitBreaker) -> None:
    for _ in range(3):
        breaker.failed(ConnectionError())
    started = []

    async def operation() -> str:
        started.append(True)
        return "answer"

    with pytest.raises(RedisUnavailableError):
        await breaker.call(operation)
    assert started == []


@pytest.mark.anyio
async def test_a_script_error_propagates_and_frees_the_trial(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    # Redis answered (with an error of ours): that is not an outage, and the half-open
    # trial must not stay taken, or the breaker would never let anyone through again.
    for _ in range(3):
        breaker.failed(ConnectionError())
    clock.now += 5
    with pytest.raises(ResponseError):
        await breaker.call(_script_bug)
    assert breaker.state is BreakerState.CLOSED
    assert await breaker.call(_answer) == "answer"


@pytest.mark.anyio
async def test_a_cancelled_trial_lets_the_next_caller_try(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    for _ in range(3):
        breaker.failed(ConnectionError())
    clock.now += 5
    task = asyncio.create_task(breaker.call(lambda: asyncio.sleep(10)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await breaker.call(_answer) == "answer"
