"""The circuit breaker: fail fast during an outage, probe one request at a time, log once."""

from __future__ import annotations

import logging

import pytest

from {{ cookiecutter.package_name }}.breaker import BreakerState, CircuitBreaker


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
