"""Rate limiting on Redis: one atomic script per decision, standard headers, proxy-aware.

* Each decision is one EVALSHA (SCRIPT LOAD only on NOSCRIPT) that reads the clock of the
  Redis server (TIME), never this host's, so clock skew between app hosts cannot change a
  limit. It is made before routing and goes to Redis in the same round trip as the other
  features' work (request_path.py); it is never retried (a retried script would count the
  request twice).
* The default policy (RATE_LIMIT_DEFAULT) applies to every route except the exempt paths
  (RATE_LIMIT_EXEMPT_PATHS; the docs are never limited); a route may declare its own with
  `@rate_limit(...)` or opt out with `@rate_limit_exempt`.
* Callers are told where they stand: `RateLimit-Policy` and `RateLimit` (IETF draft
  httpapi-ratelimit-headers) on every limited response, `X-RateLimit-*` if asked for,
  and `Retry-After` on 429 only.
* The client is the logged-in user when one is known, else its IP address: the peer's,
  or, when the peer is a trusted proxy (TRUSTED_PROXIES), the first untrusted address of
  X-Forwarded-For/Forwarded read right to left. IPv6 clients count per /64.
* Fails open by default (Redis down: requests pass, the breaker spares them the
  timeout); a policy may fail closed instead (503).
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fastapi import Request
from fastapi.routing import RouteContext
from starlette.datastructures import State
from starlette.types import Scope

from ..breaker import CircuitBreaker, RedisUnavailableError
from ..contract import Document, add_headers, add_response, error_doc
from ..errors import error_response
from ..features import NOTHING, Call, Outcome, RouteStep
from ..redis_client import RedisClient
from ..scripts import LuaScript, digest, hash_tagged
from ..settings import Settings
from ..signals import UNHEARD, Signals
from .policy import Decision, Policy, RoutePolicies, route_policy

logger = logging.getLogger(__name__)


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # Forwarded: for="[2001:db8::1]:4711"
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # an IPv4 address with a port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def forwarded_chain(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """The client addresses proxies reported, nearest last: Forwarded (RFC 7239) if
    present, else X-Forwarded-For. Every header line counts, in order."""
    forwarded: list[str] = []
    x_forwarded_for: list[str] = []
    for name, value in headers:
        if name == b"forwarded":
            for element in value.decode("latin-1").split(","):
                for pair in element.split(";"):
                    key, _, found = pair.partition("=")
                    if key.strip().lower() == "for":
                        forwarded.append(found)
        elif name == b"x-forwarded-for":
            x_forwarded_for.extend(value.decode("latin-1").split(","))
    return forwarded or x_forwarded_for


def client_address(scope: Scope, trusted: Sequence[IpNetwork]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy; then the first
    untrusted hop of the forwarding chain, read from the right."""
    peer_text = scope["client"][0] if scope.get("client") else ""
    if not trusted and "." in peer_text and ":" not in peer_text:
        return peer_text  # IPv4 from the socket, no proxy to consult: the common case
    peer = _address(peer_text)
    if peer is None:
        return peer_text or "unknown"
    client = peer
    if trusted and any(peer in network for network in trusted):
        for hop in reversed(forwarded_chain(scope["headers"])):
            address = _address(hop)
            if address is None:
                break  # a malformed entry: trust nothing further left of it
            client = address
            if not any(address in network for network in trusted):
                break
    if isinstance(client, ipaddress.IPv6Address):
        if client.ipv4_mapped:
            return str(client.ipv4_mapped)
        return str(ipaddress.IPv6Network((client, 64), strict=False))  # one bucket per /64
    return str(client)


class RateLimiter:
    def __init__(
        self,
        redis: RedisClient,
        settings: Settings,
        *,
        algorithm: str,
        identify_user: Callable[[Request], str | None] | None = None,
        route_policies: RoutePolicies | None = None,
        signals: Signals = UNHEARD,
    ) -> None:
        self._redis = redis
        self._signals = signals
        self._prefix = settings.redis_key_prefix
        self._script = LuaScript(__package__, f"{algorithm}.lua")
        self.algorithm = algorithm
        self.default = Policy.parse(settings.rate_limit_default)
        self.exempt_paths = tuple(settings.rate_limit_exempt_paths)
        self.trusted_proxies: tuple[IpNetwork, ...] = tuple(settings.trusted_proxies)
        self.route_policies = dict(route_policies or {})
        self.legacy_headers = settings.rate_limit_legacy_headers
        self._identify_user = identify_user
        self.breaker = CircuitBreaker.from_settings("rate limiter", settings, logger, signals)

    def identity(self, request: Request) -> str:
        user = self._identify_user(request) if self._identify_user else None
        if user is not None:
            return f"user:{user}"
        return f"ip:{client_address(request.scope, self.trusted_proxies)}"

    def key(self, policy: Policy, identity: str) -> str:
        """The Redis key of one client's bucket under one policy (a hash of the identity)."""
        return hash_tagged(self._prefix, f"rl:{policy.name}:{digest(identity)}", self.algorithm)

    def call(self, policy: Policy, identity: str, *, now_ms: float | None = None) -> Call:
        """The one EVALSHA of a decision, for the request path to send with the others."""
        return Call(
            script=self._script,
            keys=[self.key(policy, identity)],
            args=[policy.limit, policy.period_seconds * 1000, "" if now_ms is None else now_ms],
            breaker=self.breaker,
            settle=lambda reply: self.outcome(policy, reply),
        )

    async def check(
        self, policy: Policy, identity: str, *, now_ms: float | None = None
    ) -> Decision | None:
        """One decision on its own (one EVALSHA); None when Redis could not be asked."""
        call = self.call(policy, identity, now_ms=now_ms)
        try:
            reply = await self.breaker.call(lambda: call.script(self._redis, call.keys, call.args))
        except RedisUnavailableError:
            self._signal_unanswered(policy)
            return None
        decision = self.decision(policy, reply)
        self._signals.count("ratelimit_decision", policy.name, _outcome(decision.allowed))
        return decision

    def _signal_unanswered(self, policy: Policy) -> None:
        outcome = "failed_closed" if policy.fail_closed else "failed_open"
        self._signals.count("ratelimit_decision", policy.name, outcome)

    @staticmethod
    def decision(policy: Policy, reply: Any) -> Decision:
        allowed, remaining, reset_ms, retry_ms = reply
        return Decision(
            policy=policy,
            allowed=bool(allowed),
            remaining=max(int(remaining), 0),
            reset_seconds=math.ceil(int(reset_ms) / 1000),
            retry_after_seconds=max(math.ceil(int(retry_ms) / 1000), 1) if not allowed else 0,
        )

    def outcome(self, policy: Policy, reply: Any) -> Outcome:
        """Let the request pass (with the headers), or answer 429, or 503 for a policy that
        fails closed while Redis cannot be asked. A script error (a bug, or a key of the
        wrong type) is logged and treated like an outage: it is the limiter's alone."""
        if isinstance(reply, Exception) and not isinstance(reply, RedisUnavailableError):
            logger.error("rate limit script failed: %s", reply)
        if isinstance(reply, Exception):
            self._signal_unanswered(policy)
            if not policy.fail_closed:
                return NOTHING
            unavailable = error_response(
                503,
                "rate_limit_unavailable",
                "This route is not served while its rate limit cannot be checked.",
            )
            return Outcome(respond=unavailable)
        decision = self.decision(policy, reply)
        self._signals.count("ratelimit_decision", policy.name, _outcome(decision.allowed))
        headers = decision.headers(legacy=self.legacy_headers)
        if decision.allowed:
            return Outcome(headers=headers)
        refusal = error_response(
            429,
            "rate_limited",
            f"Too many requests: {policy.limit} per {policy.period_seconds} s allowed. "
            f"Retry in {decision.retry_after_seconds} s.",
        )
        return Outcome(respond=refusal, headers=headers)

    def policy_for(self, endpoint: Callable[..., Any] | None) -> Policy | None:
        return route_policy(endpoint, self.default, self.route_policies)

    def is_exempt(self, path: str) -> bool:
        return is_exempt_path(path, self.exempt_paths)


def _outcome(allowed: bool) -> str:
    return "allowed" if allowed else "limited"


def is_exempt_path(path: str, exempt_paths: Iterable[str]) -> bool:
    """Is `path` one of the exempt prefixes, or under one?"""
    return any(
        path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in exempt_paths
    )


def rate_limit_document(route_policies: RoutePolicies | None) -> Callable[[Settings], Document]:
    """The limiter's part of the contract: 429 (and 503 for a policy that fails closed) on
    every limited operation, and the RateLimit headers on its successful answers."""

    def with_settings(settings: Settings) -> Document:
        default = Policy.parse(settings.rate_limit_default)

        def document(
            route: RouteContext, method: str, operation: dict[str, Any], components: dict[str, Any]
        ) -> None:
            policy = route_policy(route.endpoint, default, route_policies)
            exempt = is_exempt_path(route.path_format or "", settings.rate_limit_exempt_paths)
            if policy is None or exempt:
                return
            add_headers(operation, RATE_LIMIT_HEADERS)
            refused = error_doc(
                "Too many requests from this client under the route's policy.",
                {**RATE_LIMIT_HEADERS, "Retry-After": "seconds until a request may pass"},
            )
            add_response(operation, 429, refused)
            if policy.fail_closed:
                unchecked = "Not served while the rate limit cannot be checked (Redis)."
                add_response(operation, 503, error_doc(unchecked))

        return document

    return with_settings


RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": 'the policy: "name";q=limit;w=window seconds',
    "RateLimit": '"name";r=requests remaining;t=seconds until the quota is whole again',
}


def rate_limit_step(state: State, route: RouteContext) -> RouteStep | None:
    """The limiter's part of the request path: one decision per request to a limited route,
    made before routing, so a refused request costs no endpoint, validation or body work."""
    limiter: RateLimiter = state.rate_limiter
    policy = limiter.policy_for(route.endpoint)
    if policy is None:
        return None

    def step(request: Request) -> Call | None:
        if limiter.is_exempt(request.scope["path"]):
            return None
        return limiter.call(policy, limiter.identity(request))

    return step
