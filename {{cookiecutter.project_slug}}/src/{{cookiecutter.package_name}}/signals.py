"""What the service's parts tell about their work as they do it, for whoever listens.

Each part (the Redis client, a breaker, the cache, the limiter, sessions, the real-time hub)
sends named signals with their labels: `count("cache_lookup", "items", "hit")`,
`observe("redis_command", 0.0004, "cache.lookup")`, `level("breaker_state", 2, "cache")`.
A listener, such as the service's metrics when they are enabled, turns them into figures;
with no listener they cost one call that does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
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


class Fanout:
    """Several listeners (the metrics and the traces): each signal goes to every one."""

    def __init__(self, listeners: Sequence[Signals]) -> None:
        self.listeners = tuple(listeners)

    def count(self, name: str, *labels: str) -> None:
        for listener in self.listeners:
            listener.count(name, *labels)

    def observe(self, name: str, value: float, *labels: str) -> None:
        for listener in self.listeners:
            listener.observe(name, value, *labels)

    def level(self, name: str, value: float, *labels: str) -> None:
        for listener in self.listeners:
            listener.level(name, value, *labels)


def listening(listeners: Sequence[Signals]) -> Signals:
    """What the service's parts signal to: the one listener, all of them, or none."""
    heard = [listener for listener in listeners if listener is not UNHEARD]
    if not heard:
        return UNHEARD
    return heard[0] if len(heard) == 1 else Fanout(heard)


def listeners_of(signals: Signals) -> tuple[Signals, ...]:
    return signals.listeners if isinstance(signals, Fanout) else (signals,)
