"""Rate-limit policies (N requests per period, under a name), how routes declare theirs,
and the decision the limiter reaches with its headers."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..settings import parse_rate

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


@dataclass(frozen=True)
class Policy:
    """`limit` requests per `period_seconds`, under a name shown in the headers."""

    limit: int
    period_seconds: int
    name: str = "default"
    fail_closed: bool = False

    @functools.cached_property
    def header(self) -> str:
        """The RateLimit-Policy field value, e.g. `"default";q=100;w=60`."""
        return f'"{self.name}";q={self.limit};w={self.period_seconds}'

    @classmethod
    def parse(cls, text: str, *, name: str = "default", fail_closed: bool = False) -> Policy:
        """`N/second`, `N/minute`, `N/hour` or `N/day`, e.g. `100/minute`."""
        limit, period_seconds = parse_rate(text)
        if not NAME_RE.match(name):
            raise ValueError(f"rate limit name {name!r}: use 1-32 of a-z 0-9 _ -")
        return cls(limit, period_seconds, name, fail_closed)


@dataclass(frozen=True)
class Decision:
    policy: Policy
    allowed: bool
    remaining: int
    reset_seconds: int
    retry_after_seconds: int

    def headers(self, *, legacy: bool) -> dict[str, str]:
        headers = {
            "ratelimit-policy": self.policy.header,
            "ratelimit": f'"{self.policy.name}";r={self.remaining};t={self.reset_seconds}',
        }
        if legacy:
            headers["x-ratelimit-limit"] = str(self.policy.limit)
            headers["x-ratelimit-remaining"] = str(self.remaining)
            headers["x-ratelimit-reset"] = str(self.reset_seconds)
        if not self.allowed:
            headers["retry-after"] = str(self.retry_after_seconds)
        return headers


# Where `rate_limit` and `rate_limit_exempt` leave a route's policy: on the endpoint itself.
POLICY_ATTRIBUTE = "__rate_limit_policy__"
RoutePolicies = Mapping[Callable[..., Any], "Policy | None"]


def rate_limit(
    limit: str, *, name: str, fail_closed: bool = False
) -> Callable[[Endpoint], Endpoint]:
    """Give a route its own policy instead of the default, e.g. `@rate_limit("5/minute",
    name="login", fail_closed=True)`. Put it under the route decorator."""
    policy = Policy.parse(limit, name=name, fail_closed=fail_closed)

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, POLICY_ATTRIBUTE, policy)
        return endpoint

    return mark


def rate_limit_exempt(endpoint: Endpoint) -> Endpoint:
    """Never limit this route (and never touch Redis for it)."""
    setattr(endpoint, POLICY_ATTRIBUTE, None)
    return endpoint


def route_policy(
    endpoint: Callable[..., Any] | None, default: Policy, overrides: RoutePolicies | None = None
) -> Policy | None:
    """The route's policy: one the app gave it (`overrides`), else its own (None if exempt),
    else the default. Decorators that wrap the endpoint are looked through."""
    while endpoint is not None:
        if overrides and endpoint in overrides:
            return overrides[endpoint]
        if hasattr(endpoint, POLICY_ATTRIBUTE):
            policy: Policy | None = getattr(endpoint, POLICY_ATTRIBUTE)
            return policy
        endpoint = getattr(endpoint, "__wrapped__", None)
    return default
