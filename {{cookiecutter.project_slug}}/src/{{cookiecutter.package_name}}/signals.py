"""What the service's parts tell about their work as they do it, for whoever listens.

Each part (the Redis client, a breaker, the cache, the limiter, sessions, the real-time hub)
sends named signals with their labels: `count("cache_lookup", "items", "hit")`,
`observe("redis_command", 0.0004, "cache.lookup")`, `level("breaker_state", 2, "cache")`.
A listener, such as the service's metrics when they are enabled, turns them into figures;
with no listener they cost one call that does nothing.
"""

from __future__ import annotations

from typing import Protocol


class Signals(Protocol):
    def count(self, name: str, *labels: str) -> None:
        """One more of something: a lookup, a decision, a transition."""

    def observe(self, name: str, value: float, *labels: str) -> None:
        """A measurement, such as how many seconds something took."""

    def level(self, name: str, value: float, *labels: str) -> None:
        """Where something stands now, such as a breaker's state."""


class Unheard:
    """No listener: every signal is dropped."""

    def count(self, name: str, *labels: str) -> None:
        pass

    def observe(self, name: str, value: float, *labels: str) -> None:
        pass

    def level(self, name: str, value: float, *labels: str) -> None:
        pass


UNHEARD: Signals = Unheard()
