"""A small circuit breaker, so a Redis outage costs one timeout, not one per request.

After `threshold` consecutive failures the breaker opens: callers skip Redis for
`cooldown` seconds. Then one caller at a time may try again (half-open); a success
closes the breaker, a failure opens it for another cooldown. State changes are logged
once each, not once per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import Enum


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        threshold: int,
        cooldown_seconds: float,
        logger: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.cooldown_seconds = cooldown_seconds
        self._logger = logger
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self.state = BreakerState.CLOSED

    def allow(self) -> bool:
        """May this caller use Redis now?"""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.cooldown_seconds:
                return False
            self.state = BreakerState.HALF_OPEN
            self._trial_in_flight = False
        if self._trial_in_flight:
            return False
        self._trial_in_flight = True
        return True

    def succeeded(self) -> None:
        if self.state is not BreakerState.CLOSED:
            self._logger.warning("%s: Redis answers again; back to normal", self.name)
        self.state = BreakerState.CLOSED
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
            self.state = BreakerState.OPEN
            self._opened_at = self._clock()
