"""A small circuit breaker, so a Redis outage costs one timeout, not one per request.

After `threshold` consecutive failures the breaker opens: callers skip Redis for
`cooldown` seconds. Then one caller at a time may try again (half-open); a success
closes the breaker, a failure opens it for another cooldown. State changes are logged
once each, not once per request, and signalled (`breaker_state`: 0 closed, 1 half-open,
2 open; `breaker_transition` with the new state) for the metrics.

Every feature that talks to Redis goes through `call`, and decides itself what
RedisUnavailableError means for it: serve uncached, let the request pass, answer 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TypeVar

from .redis_client import UNAVAILABLE_ERRORS, RedisUnavailableError
from .settings import Settings
from .signals import UNHEARD, Signals

__all__ = ["BreakerState", "CircuitBreaker", "RedisUnavailableError"]

Result = TypeVar("Result")


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


STATE_LEVELS = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        threshold: int,
        cooldown_seconds: float,
        logger: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
        signals: Signals = UNHEARD,
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.cooldown_seconds = cooldown_seconds
        self._logger = logger
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self._signals = signals
        self.state = BreakerState.CLOSED
        signals.level("breaker_state", 0, name)

    @classmethod
    def from_settings(
        cls, name: str, settings: Settings, logger: logging.Logger, signals: Signals = UNHEARD
    ) -> CircuitBreaker:
        return cls(
            name,
            threshold=settings.redis_breaker_threshold,
            cooldown_seconds=settings.redis_breaker_cooldown_seconds,
            logger=logger,
            signals=signals,
        )

    def _move(self, state: BreakerState) -> None:
        self.state = state
        self._signals.level("breaker_state", STATE_LEVELS[state], self.name)
        self._signals.count("breaker_transition", self.name, state.value)

    async def call(self, operation: Callable[[], Awaitable[Result]]) -> Result:
        """Run one Redis operation through the breaker.

        Raises RedisUnavailableError when the breaker is open or Redis is unavailable.
        Any other error means Redis answered (a script error, say): it counts as a
        success for the breaker and propagates. A cancelled call frees its trial slot.
        """
        if not self.allow():
            raise RedisUnavailableError
        try:
            result = await operation()
        except UNAVAILABLE_ERRORS as error:
            self.failed(error)
            raise RedisUnavailableError from error
        except asyncio.CancelledError:
            self.abandoned()
            raise
        except Exception:
            self.succeeded()
            raise
        self.succeeded()
        return result

    def allow(self) -> bool:
        """May this caller use Redis now?"""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.cooldown_seconds:
                return False
            self._move(BreakerState.HALF_OPEN)
            self._trial_in_flight = False
        if self._trial_in_flight:
            return False
        self._trial_in_flight = True
        return True

    def abandoned(self) -> None:
        """The caller that was allowed gave up before Redis answered (it was cancelled)."""
        self._trial_in_flight = False

    def succeeded(self) -> None:
        if self.state is not BreakerState.CLOSED:
            self._logger.warning("%s: Redis answers again; back to normal", self.name)
            self._move(BreakerState.CLOSED)
        self._failures = 0
        self._trial_in_flight = False

    def failed(self, error: BaseException) -> None:
        self._failures += 1
        self._trial_in_flight = False
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED and self._failures >= self.threshold
        ):
            if self.state is BreakerState.CLOSED:
                self._logger.error(
                    "%s: Redis failed %d times in a row (%s); skipping it for %.1f s at a time",
                    self.name,
                    self._failures,
                    error.__class__.__name__,
                    self.cooldown_seconds,
                )
            self._move(BreakerState.OPEN)
            self._opened_at = self._clock()
